"""How the reference (FastAPI 0.138.0, Starlette 1.3.1, pydantic 2.13.4: the versions its requirements pin) answers
POST /execute and POST /execute/stream for a body of each content type and text encoding, as measured by
Tests/tools/measure_fastapi_bodies.py, which checks this table against those versions. Both endpoints answer
alike in every row. test_execute_body_types.py holds sandboxd to the table.

A row is (name, Content-Type or None for no header, body, status, answer); answer None means the command ran
(every body that runs is `echo ok`), else it is the JSON error body.
"""

OK = '{"command": "echo ok"}'
JSON = OK.encode()
PARSE_ERROR = {"detail": "There was an error parsing the body"}
MISSING = {"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]}


def not_a_model(text: str) -> dict:
    """The 422 for a body that is not JSON: pydantic was handed the raw bytes, which FastAPI echoes as text."""
    return {"detail": [{"type": "model_attributes_type", "loc": ["body"],
                        "msg": "Input should be a valid dictionary or object to extract fields from", "input": text}]}


def json_invalid(position: int, error: str) -> dict:
    return {"detail": [{"type": "json_invalid", "loc": ["body", position], "msg": "JSON decode error", "input": {},
                        "ctx": {"error": error}}]}


ROWS = [
    ("json", "application/json", JSON, 200, None),
    ("text-plain", "text/plain", JSON, 422, not_a_model(OK)),
    ("form-urlencoded", "application/x-www-form-urlencoded", JSON, 422, not_a_model(OK)),
    ("no-content-type", None, JSON, 422, not_a_model(OK)),
    ("empty-content-type", "", JSON, 422, not_a_model(OK)),
    ("vendor-plus-json", "application/vnd.x+json", JSON, 200, None),
    ("bare-plus-json", "application/+json", JSON, 200, None),
    ("json-charset-latin-1", "application/json; charset=latin-1", JSON, 200, None),
    ("json-charset-latin-1-non-ascii", "application/json; charset=latin-1", b'{"command": "echo caf\xe9"}', 400,
     PARSE_ERROR),
    ("json-charset-no-space", "application/json;charset=utf-8", JSON, 200, None),
    ("upper-case-type", "APPLICATION/JSON", JSON, 200, None),
    ("padded-type", "application/json ; charset=utf-8", JSON, 200, None),
    ("space-after-slash", "application/ json", JSON, 422, not_a_model(OK)),
    ("text-json", "text/json", JSON, 422, not_a_model(OK)),
    ("jsonx", "application/jsonx", JSON, 422, not_a_model(OK)),
    ("no-slash", "json", JSON, 422, not_a_model(OK)),
    ("two-types", "application/json, text/plain", JSON, 422, not_a_model(OK)),
    ("multipart", "multipart/form-data; boundary=x", JSON, 422, not_a_model(OK)),
    ("invalid-utf-8", "application/json", b'{"command": "echo \xff"}', 400, PARSE_ERROR),
    ("overlong-utf-8", "application/json", b'{"command": "echo \xc0\xaf"}', 400, PARSE_ERROR),
    ("utf-8-bom", "application/json", b"\xef\xbb\xbf" + JSON, 200, None),
    ("two-utf-8-boms", "application/json", b"\xef\xbb\xbf\xef\xbb\xbf" + JSON, 422, json_invalid(0, "Expecting value")),
    ("utf-16-bom", "application/json", b"\xff\xfe" + OK.encode("utf-16-le"), 200, None),
    ("utf-16-be-bom", "application/json", b"\xfe\xff" + OK.encode("utf-16-be"), 200, None),
    ("utf-16-le", "application/json", OK.encode("utf-16-le"), 200, None),
    ("utf-16-be", "application/json", OK.encode("utf-16-be"), 200, None),
    ("utf-16-odd-length", "application/json", OK.encode("utf-16-le") + b"\x00", 400, PARSE_ERROR),
    ("utf-32-bom", "application/json", b"\xff\xfe\x00\x00" + OK.encode("utf-32-le"), 200, None),
    ("utf-32-be", "application/json", OK.encode("utf-32-be"), 200, None),
    ("utf-32-le", "application/json", OK.encode("utf-32-le"), 200, None),
    ("utf-32-out-of-range", "application/json", OK.encode("utf-32-le")[:-4] + b"\x00\x00\x11\x00", 400, PARSE_ERROR),
    ("text-plain-not-json", "text/plain", b"not json", 422, not_a_model("not json")),
    ("text-plain-empty", "text/plain", b"", 422, MISSING),
    ("json-empty", "application/json", b"", 422, MISSING),
    ("json-bom-only", "application/json", b"\xef\xbb\xbf", 422, json_invalid(0, "Expecting value")),
    ("json-truncated", "application/json", b"{", 422,
     json_invalid(1, "Expecting property name enclosed in double quotes")),
    ("json-error-after-non-ascii", "application/json", '{"command": "é" x}'.encode(), 422,
     json_invalid(16, "Expecting ',' delimiter")),
    ("utf-16-error-after-non-ascii", "application/json", '{"command": "é" x}'.encode("utf-16-le"), 422,
     json_invalid(16, "Expecting ',' delimiter")),
    ("json-array", "application/json", b"[1]", 422,
     {"detail": [{"type": "model_attributes_type", "loc": ["body"],
                  "msg": "Input should be a valid dictionary or object to extract fields from", "input": [1]}]}),
]
