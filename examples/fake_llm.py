"""A small OpenAI-style chat completions server on loopback, for the chat agent example
and its tests: it answers, sometimes fails (HTTP 503), and refuses a conversation that is
too long with a ``context_length_exceeded`` error, as real endpoints do.

    python examples/fake_llm.py --port 8765 --max-messages 8 --fail-every 5
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeLLM:
    """The server's behaviour; ``serve()`` runs it in a thread and returns its base URL.

    Args:
        max_messages: more messages than this in one request -> context_length_exceeded.
        fail_every: every Nth request fails with 503 (0: never).
    """

    def __init__(self, max_messages: int = 8, fail_every: int = 0) -> None:
        self.max_messages = max_messages
        self.fail_every = fail_every
        self.requests = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Return ``(status, json)`` for one chat completions request body."""
        with self.lock:
            self.requests += 1
            n = self.requests
        messages = body.get("messages", [])
        if self.fail_every and n % self.fail_every == 0:
            return 503, {"error": {"type": "server_error", "message": "overloaded, retry"}}
        if len(messages) > self.max_messages:
            return 400, {"error": {"type": "invalid_request_error",
                                   "code": "context_length_exceeded",
                                   "message": f"{len(messages)} messages is over the limit of "
                                              f"{self.max_messages}"}}
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if last.startswith("Summarize"):
            reply = "Summary: " + "; ".join(m["content"][:20] for m in messages
                                            if m["role"] == "user")[:200]
        else:
            reply = f"You said {last!r}; I remember {len(messages)} messages."
        return 200, {"id": f"chatcmpl-{n}", "object": "chat.completion",
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": reply}}]}

    def serve(self, port: int = 0) -> str:
        """Start serving on 127.0.0.1 in a daemon thread; return the base URL."""
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    status, payload = llm.answer(body)
                except json.JSONDecodeError:
                    status, payload = 400, {"error": {"message": "body is not JSON"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--max-messages", type=int, default=8)
    parser.add_argument("--fail-every", type=int, default=0)
    a = parser.parse_args()
    llm = FakeLLM(a.max_messages, a.fail_every)
    print("serving on", llm.serve(a.port), flush=True)
    threading.Event().wait()
