"""An OpenAI-compatible ``/v1/chat/completions`` endpoint on 127.0.0.1 for tests: replies come from a function
of the request's messages; every request's messages are kept in ``requests``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ChatStub:
    """``ChatStub(answer)`` serves ``answer(messages)`` as the assistant's reply at ``self.url``."""

    def __init__(self, answer: Callable[[list[dict[str, Any]]], str]):
        self.requests: list[list[dict[str, Any]]] = []
        self.answer = answer
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                stub.requests.append(body.get("messages") or [])
                data = json.dumps({"id": "c1", "object": "chat.completion", "created": 0,
                                   "model": body.get("model", "stub"),
                                   "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                       "role": "assistant", "content": stub.answer(stub.requests[-1])}}],
                                   "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
