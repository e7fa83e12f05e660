#!/usr/bin/env python3
"""Checks Tests/e2e/execute_body_table.py against the reference's framework: each row's body is sent to a FastAPI app
with the reference's model, on /execute and /execute/stream, and both answers must be the row's.

It needs the versions the reference's requirements pin, in a virtual environment outside the repository:
    python3 -m venv /tmp/fastapi-ref
    /tmp/fastapi-ref/bin/pip install fastapi==0.138.0 starlette==1.3.1 pydantic==2.13.4 httpx
    /tmp/fastapi-ref/bin/python Tests/tools/measure_fastapi_bodies.py
It prints what it measured for each row and exits 1 if any row differs. The app has the reference's model
(`command: str`) plus the optional timeout sandboxd also accepts; the handlers only echo the command, since what is
measured is how the body is parsed, which FastAPI does before a handler runs.
"""

import json
import pathlib
import sys

import fastapi
import pydantic
import starlette
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "e2e"))

from execute_body_table import ROWS  # noqa: E402


class ExecuteRequest(BaseModel):
    command: str
    timeout: float | None = None


app = FastAPI()


@app.post("/execute")
async def execute(request: ExecuteRequest):
    return {"command": request.command}


@app.post("/execute/stream")
async def execute_stream(request: ExecuteRequest):
    async def events():
        yield f"event: done\ndata: {json.dumps({'command': request.command})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def measure(content_type: str | None, body: bytes) -> tuple[int, dict | None]:
    """The status and answer (None when the command ran) of both endpoints, which must agree."""
    client = TestClient(app, raise_server_exceptions=False)
    answers = []
    for path in ("/execute", "/execute/stream"):
        request = client.build_request("POST", path, content=body)
        request.headers.pop("content-type", None)
        if content_type is not None:
            request.headers["content-type"] = content_type
        response = client.send(request)
        if response.status_code == 200:
            text = response.text if path == "/execute" else response.text.split("data: ", 1)[1]
            assert json.loads(text)["command"] == "echo ok", text
            answers.append((200, None))
        else:
            answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1], f"the two endpoints differ: {answers}"
    return answers[0]


def main() -> None:
    print(f"fastapi {fastapi.__version__}, starlette {starlette.__version__}, pydantic {pydantic.VERSION}")
    differ = 0
    for name, content_type, body, status, answer in ROWS:
        measured = measure(content_type, body)
        print(f"{name:32} {measured[0]} {json.dumps(measured[1]) if measured[1] else 'ran'}")
        if measured != (status, answer):
            differ += 1
            print(f"  the table says {status} {answer}")
    print(f"{len(ROWS) - differ} rows match, {differ} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
