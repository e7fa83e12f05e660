"""The OpenAPI document at GET /openapi.json against the server that serves it.

- The server serves the data file in the repository (Sources/SandboxService/API/openapi.json) byte for byte, with
  its version filled in; the other tests read that file, so a route missing from it fails them. (OpenAPIDocumentTests
  in Swift also holds the file against the server's route table.)
- It is a valid OpenAPI document (openapi-spec-validator) that names the server's version.
- Every route the server answers is in it: a list of probe URLs (the API's, plus near misses and the paths other
  frameworks serve) is sent with every method, and each method + URL the server routes (anything but the router's
  404 `{"detail": "Not Found"}` and 405) must match a documented operation.
- Every documented operation exists: sent with sample values, none gets the router's 404 or a 405, and each GET
  also answers HEAD without a body.
- The documented security holds: with --token every operation but GET / answers 401 with `WWW-Authenticate:
  Bearer` without the token, and is served with it.

The fuzzing against the document is test_fuzz_schemathesis.py.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from typing import Any, Iterator

import pytest
from openapi_spec_validator import validate

from conftest import REPO, Api, RawResponse

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
TOKEN = "openapi-test-token"
DATA_FILE = REPO / "Sources" / "SandboxService" / "API" / "openapi.json"
# What the data file has for info.version; the server fills in its own (OpenAPIDocument.versionPlaceholder).
VERSION_PLACEHOLDER = "@SANDBOXD_VERSION@"


def fetch_document(api: Api, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = api.raw("GET", "/openapi.json", headers=headers)
    assert resp.status == 200, resp
    assert resp.headers["Content-Type"].split(";")[0] == "application/json"
    return resp.json()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The data file in the repository (test_served_document_is_the_data_file: what the server serves)."""
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(METHOD, path template) of every documented operation."""
    for template, item in document["paths"].items():
        for method in item:
            if method in ("get", "head", "post", "put", "delete", "patch", "options"):
                yield method.upper(), template


def template_regex(template: str) -> re.Pattern[str]:
    """A path template as a regex over decoded paths: `{path}` takes the rest (slashes too), `{id}` one segment."""
    pattern = ""
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", template):
        pattern += re.escape(literal)
        if name == "path":
            pattern += ".*"
        elif name:
            pattern += "[^/]+"
    return re.compile(pattern + r"\Z")


def documented(document: dict[str, Any], method: str, path: str) -> bool:
    """Whether some documented operation covers method on the decoded path; HEAD is covered by GET."""
    wanted = {method.lower()} | ({"get"} if method == "HEAD" else set())
    return any(
        template_regex(template).match(path) and wanted & set(item)
        for template, item in document["paths"].items()
    )


def routed(resp: RawResponse) -> bool:
    """False for the router's own answers: unknown path (404 `{"detail": "Not Found"}`) and wrong method (405)."""
    if resp.status == 405:
        return False
    if resp.status == 404 and resp.content:
        try:
            return resp.json() != {"detail": "Not Found"}
        except ValueError:
            return True
    return True


def is_routed(api: Api, method: str, url: str) -> tuple[bool, RawResponse]:
    """Whether the server routes method on url, and its answer. A HEAD answer has no body to tell the router's 404
    from a handler's, so the GET answer decides."""
    resp = send(api, method, url)
    if method == "HEAD" and resp.status == 404:
        return routed(send(api, "GET", url)), resp
    return routed(resp), resp


def send(api: Api, method: str, url: str, headers: dict[str, str] | None = None) -> RawResponse:
    # Bodies that every route refuses or that harm nothing: an empty JSON object, or no body.
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    hdrs = {"Content-Type": "application/json", **(headers or {})} if body is not None else dict(headers or {})
    return api.raw(method, url, body=body, headers=hdrs)


# --------------------------------------------------------------------------
# the document itself


def test_served_document_is_the_data_file(api: Api, document: dict[str, Any]) -> None:
    data = DATA_FILE.read_bytes()
    assert data.count(VERSION_PLACEHOLDER.encode()) == 1 and document["info"]["version"] == VERSION_PLACEHOLDER
    served = api.raw("GET", "/openapi.json")
    assert served.status == 200, served
    version = served.json()["info"]["version"]
    assert version != VERSION_PLACEHOLDER
    assert served.content == data.replace(VERSION_PLACEHOLDER.encode(), version.encode()), \
        f"GET /openapi.json is not {DATA_FILE.relative_to(REPO)} (rebuild the server?)"


def test_document_is_valid_openapi(api: Api, document: dict[str, Any], server) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")
    if server.local:
        started = re.search(r"sandboxd (\S+) listening on", server.logs())
        assert started, server.log_tail()
        assert fetch_document(api)["info"]["version"] == started.group(1)


def test_head_of_the_document(api: Api, document: dict[str, Any]) -> None:
    resp = api.raw("HEAD", "/openapi.json")
    assert resp.status == 200 and resp.content == b""
    assert resp.headers["Content-Type"] == "application/json"


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
            node = node[part]


def test_every_operation_documents_its_auth_and_errors(document: dict[str, Any]) -> None:
    assert {"bearer"} == set(document["components"]["securitySchemes"])
    assert document["security"] == [{}, {"bearer": []}]
    for method, template in operations(document):
        operation = document["paths"][template][method.lower()]
        assert operation.get("operationId"), (method, template)
        statuses = set(operation["responses"])
        if (method, template) == ("GET", "/"):
            assert operation["security"] == [], "GET / never needs a token"
            continue
        assert "401" in statuses, f"{method} {template} does not document 401"
        if "{" in template and method != "HEAD":
            assert "400" in statuses, f"{method} {template}: a URL that does not decode is a 400"


# --------------------------------------------------------------------------
# routes against the document

# Every route of the API, with sample values, and paths that are no route (near misses, other frameworks'
# conventional paths): whatever the server routes among them must be documented.
PROBES = [
    "/",
    "/execute",
    "/execute/stream",
    "/upload",
    "/download/{file}",
    "/list/{dir}",
    "/exists/{file}",
    "/v1/files/{file}",
    "/v1/files/{dir}",
    "/v1/health",
    "/v1/metadata",
    "/v1/processes",
    "/v1/processes/{pid}",
    "/v1/processes/{pid}/events",
    "/v1/processes/{pid}/wait",
    "/v1/processes/{pid}/stdin",
    "/v1/processes/{pid}/signal",
    "/v1/processes/{pid}/resize",
    "/v1/watch",
    "/metrics",
    "/openapi.json",
    # not routes
    "/execute/",
    "/execute/stream/",
    "/upload/x",
    "/download",
    "/list",
    "/exists",
    "/v1",
    "/v1/",
    "/v1/files",
    "/v1/health/",
    "/v1/processes/",
    "/v1/processes/{pid}/unknown",
    "/v1/processes/{pid}/events/x",
    "/v1/watch/",
    "/v2/files/x",
    "/health",
    "/healthz",
    "/readyz",
    "/version",
    "/docs",
    "/redoc",
    "/openapi.yaml",
    "/swagger.json",
    "/metrics/",
    "/favicon.ico",
]


@pytest.fixture
def samples(api: Api) -> Iterator[dict[str, str]]:
    """Sample values naming real things: a file and a directory in the root, and an exited process."""
    name = f"openapi-probe-{uuid.uuid4().hex[:8]}"
    resp = api.post("/upload", files={"file": (f"{name}/sample.txt", b"sample\n")})
    assert resp.status_code == 200, resp.text
    started = api.post("/v1/processes", json={"command": ["true"]})
    assert started.status_code == 201, started.text
    pid = started.json()["id"]
    waited = api.get(f"/v1/processes/{pid}/wait?timeout=10")
    assert waited.status_code == 200 and waited.json()["status"] == "exited", waited.text
    yield {"file": f"{name}/sample.txt", "dir": name, "pid": pid}
    api.request("DELETE", f"/v1/processes/{pid}")
    api.request("DELETE", f"/v1/files/{name}?recursive=true")


def sample_url(probe: str, samples: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: urllib.parse.quote(samples[m.group(1)], safe="/"), probe)


def test_every_route_the_server_answers_is_documented(api: Api, document: dict[str, Any],
                                                      samples: dict[str, str]) -> None:
    answered = []
    undocumented = []
    for probe in PROBES:
        url = sample_url(probe, samples)
        for method in METHODS:
            if method in ("PUT", "DELETE") and probe.startswith(("/v1/files/", "/v1/processes/{pid}")):
                continue  # would change the samples; their routes are probed by the next test
            answers, resp = is_routed(api, method, url)
            if not answers:
                continue
            answered.append(f"{method} {url}")
            if not documented(document, method, urllib.parse.unquote(url)):
                undocumented.append(f"{method} {url} -> {resp.status} {resp.content[:120]!r}")
    assert not undocumented, "routes the server answers but the document lacks:\n" + "\n".join(undocumented)
    # The probe list is not vacuous: each documented path template was reached.
    reached = {template for template in document["paths"]
               if any(template_regex(template).match(urllib.parse.unquote(a.split(" ", 1)[1])) for a in answered)}
    assert reached == set(document["paths"]), set(document["paths"]) - reached


def test_every_documented_operation_exists(api: Api, document: dict[str, Any], samples: dict[str, str]) -> None:
    values = {"path": samples["file"], "id": samples["pid"]}
    missing = []
    # Destructive operations last, so that the others see the samples.
    ordered = sorted(operations(document), key=lambda op: op[0] == "DELETE")
    for method, template in ordered:
        url = re.sub(r"\{(\w+)\}", lambda m: urllib.parse.quote(values[m.group(1)], safe="/"), template)
        resp = send(api, method, url)
        if not routed(resp):
            missing.append(f"{method} {url} -> {resp.status} {resp.content[:120]!r}")
        if method == "GET":
            head = api.raw("HEAD", url)
            if head.status != resp.status or head.content:
                missing.append(f"HEAD {url} -> {head.status} {head.content[:120]!r} (GET gave {resp.status})")
    assert not missing, "documented operations the server does not route:\n" + "\n".join(missing)


def test_documented_statuses_cover_the_samples(api: Api, document: dict[str, Any], samples: dict[str, str]) -> None:
    """The answers to the sample requests have documented statuses and content types (the fuzzer goes further)."""
    values = {"path": samples["dir"], "id": samples["pid"]}
    problems = []
    for method, template in operations(document):
        if method in ("DELETE", "PUT") or template == "/upload":
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: urllib.parse.quote(values[m.group(1)], safe="/"), template)
        resp = send(api, method, url)
        responses = document["paths"][template][method.lower()]["responses"]
        if str(resp.status) not in responses:
            problems.append(f"{method} {url}: {resp.status} is not documented ({sorted(responses)})")
            continue
        response = responses[str(resp.status)]
        if "$ref" in response:
            response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        content_type = (resp.headers.get("Content-Type") or "").split(";")[0]
        if resp.content and method != "HEAD" and content_type not in response.get("content", {}):
            problems.append(f"{method} {url}: {resp.status} {content_type} is not documented")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["\u0301x", "\U0001F3FB", "\u200d"])
def test_path_parameters_may_start_with_any_character(api: Api, document: dict[str, Any], name: str) -> None:
    """`{path}` is the rest of the URL whatever its first character: a combining mark, an emoji modifier or a
    joiner right after the prefix's slash does not make the route miss (found by the fuzzer)."""
    for method, template in operations(document):
        if "{path}" not in template or method not in ("GET", "HEAD"):
            continue
        url = template.replace("{path}", urllib.parse.quote(name, safe=""))
        routed_, resp = is_routed(api, method, url)
        assert routed_, f"{method} {url} -> {resp.status} {resp.content[:120]!r}"


# --------------------------------------------------------------------------
# security


def test_token_is_required_where_documented(start_server, make_api) -> None:
    server = start_server("--token", TOKEN)
    api: Api = make_api(server)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    document = fetch_document(api, auth)
    assert api.raw("GET", "/openapi.json").status == 401
    values = {"path": "nothing-here", "id": "00000000"}
    problems = []
    for method, template in operations(document):
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        operation = document["paths"][template][method.lower()]
        security = operation.get("security", document["security"])
        resp = send(api, method, url)
        if security == []:
            if resp.status == 401:
                problems.append(f"{method} {url}: 401 though the document says no token is needed")
            continue
        if resp.status != 401:
            problems.append(f"{method} {url}: {resp.status} without the token")
        elif resp.headers.get("WWW-Authenticate") != "Bearer" or (method != "HEAD" and
                                                                 resp.json() != {"detail": "Not authenticated"}):
            problems.append(f"{method} {url}: 401 without its documented header or body: {resp.headers} {resp}")
        if send(api, method, url, auth).status == 401:
            problems.append(f"{method} {url}: 401 with the token")
    assert not problems, "\n".join(problems)


def test_document_is_json_with_no_trailing_garbage(api: Api) -> None:
    resp = api.raw("GET", "/openapi.json")
    json.loads(resp.content.decode("utf-8"))
