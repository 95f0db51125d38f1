"""A small OpenAI-compatible chat-completions server on 127.0.0.1, scripted per test (and per benchmark).

Requests are answered from `script` first (one action each, in order), then by `responder`, which
writes a valid answer for the requested schema from what the prompt says, so that a test can check
that each answer landed on the item it was asked about. `stop()` and `start()` (or `with srv.down():`) take the
server away, as a crash does, and bring it back on the same port.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator, Optional


@dataclass
class Reply:
    content: str
    finish_reason: str = "stop"


@dataclass
class Status:
    code: int
    retry_after: Optional[str] = None
    message: str = "scripted error"


@dataclass
class MalformedBody:
    body: bytes = b'{"id": "x", "choices": [{"message": {"content": "{\\"summ'


@dataclass
class Hang:
    seconds: float = 30.0


@dataclass
class Drop:
    """Close the connection without an answer, as a server (or a proxy) that drops one request does."""


@dataclass
class Delay:
    seconds: float
    then: object = None  # the action after the delay; None: the responder's answer


@dataclass
class Served:
    path: str
    body: dict
    headers: dict
    action: str
    t: float = field(default_factory=time.monotonic)
    answered: bool = False  # the whole answer was written (before a `stop()` could cut it)


def _user_text(body: dict) -> str:
    parts = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts += [c.get("text", "") for c in content if c.get("type") == "text"]
    return "\n".join(parts)


def schema_name(body: dict) -> str:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt["json_schema"]["name"]
    system = next((m["content"] for m in body.get("messages", []) if m.get("role") == "system"), "")
    titles = re.findall(r'"title": "(\w+Out)"', system)
    return titles[-1] if titles else ""


def grounded_answer(body: dict) -> dict:
    """A valid answer for the request's schema, built from the prompt's own first caption and times."""
    text = _user_text(body)
    times = re.search(r"from ([\d.]+) s to ([\d.]+) s", text)
    when = f"from {times.group(1)} s to {times.group(2)} s" if times else "throughout"
    first = next((line[2:].strip() for line in text.splitlines() if line.startswith("- ")), "the scene")
    anomalous = "labelled as an anomaly" in text or "labelled as anomalous" in text
    name = schema_name(body)
    if name == "CaptionOut":
        n_images = sum(1 for m in body["messages"] if isinstance(m.get("content"), list)
                       for c in m["content"] if c.get("type") == "image_url")
        return {"caption": f"A scene seen in {n_images} frames {when}."}
    if name == "SummaryOut":
        judgement = ("An anomaly occurs " if anomalous else "No anomaly occurs ") + when + "."
        return {"summary": f"{judgement} It begins with: {first}", "judgement": judgement,
                "description": f"It begins with: {first}",
                "analysis": f"This is abnormal because {first}" if anomalous else None}
    if name == "QAOut":
        kinds = ["what", "who", "where", "when", "how", "how_much", "why"]
        answers = {k: f"{k}: {first}" for k in kinds} | {"when": f"It happens {when}."}
        return {"pairs": [{"qa_type": k, "question": f"{k.replace('_', ' ').title()}?", "answer": answers[k]}
                          for k in kinds]}
    if name == "ChainOut":
        timed = re.findall(r"^- \[([\d.]+)-([\d.]+) s\] (.*)$", text, re.M)
        label = re.search(r"labelled as an anomaly: ([^.\n]+)\.", text)
        return {"scene": "The scene the texts describe.", "what_happens": f"It begins with: {first}",
                "observations": [{"start_s": float(a), "end_s": float(b), "text": t} for a, b, t in timed],
                "why": "This departs from normal behaviour." if anomalous else "Only ordinary activity is seen.",
                "cause": "It starts in the first clip." if anomalous else None,
                "consequence": f"It ends {when}." if anomalous else None,
                "conclusion": f"An anomaly occurs: {label.group(1) if label else 'anomaly'}, {when}." if anomalous
                else "No anomaly occurs; it is normal."}
    raise ValueError(f"no grounded answer for schema {name!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: many clients connect at once (the default 5 refuses some)
    allow_reuse_address = True  # `start()` after `stop()` binds the same port again at once

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a connection `stop()` cut is expected: say nothing
            super().handle_error(request, client_address)


class FakeOpenAI:
    def __init__(self, responder: Callable[[dict], object] = lambda body: Reply(json.dumps(grounded_answer(body))),
                 latency_s: float = 0.0):
        self.responder = responder
        self.latency_s = latency_s
        self.script: deque = deque()
        self.served: list[Served] = []
        self.port = 0  # 0 until the first start: then the port it keeps across stop() and start()
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._httpd is not None:
            self.stop()

    def start(self) -> "FakeOpenAI":
        """Listen (again) on 127.0.0.1, on the port of the first start."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: Nagle would hold the body ~40 ms

            def log_message(self, *args):  # keep test output quiet
                pass

            def setup(self):
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self):
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def do_GET(self):  # /stats: what was served, for a client in another process
                if server._stopping.is_set():
                    self.close_connection = True
                    return
                data = json.dumps({"completions": len(server.completions)}).encode()
                server._send(self, 200, data)

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                data = self.rfile.read(length)
                if len(data) < length:  # the connection was cut mid-request (`stop()`): nothing to answer
                    self.close_connection = True
                    return
                server._handle(self, json.loads(data or b"{}"))

        self._httpd = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._httpd.server_address[1]
        self._stopping.clear()
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Gone, as a crashed server is: the port refuses connections and open ones are cut (requests in flight
        get no answer)."""
        httpd, self._httpd = self._httpd, None
        self._stopping.set()  # from now on no request is answered, not even one in flight
        self._cut_connections()
        httpd.shutdown()
        httpd.server_close()
        self._cut_connections()  # any accepted while it was shutting down

    def _cut_connections(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler

    @contextmanager
    def down(self) -> Iterator[None]:
        """`with srv.down(): ...`: stopped for the block, listening on the same port again after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completions(self) -> list[Served]:
        return [s for s in self.served if s.path.endswith("/chat/completions")]

    # ------------------------------------------------------------------ answering
    def _next_action(self, body: dict):
        with self._lock:
            if self.script:
                return self.script.popleft()
        return self.responder(body)

    @property
    def answered(self) -> list[Served]:
        return [s for s in self.completions if s.answered]

    def _handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        if self._stopping.is_set():
            handler.close_connection = True
            return
        action = self._next_action(body)
        served = Served(handler.path, body, {k.lower(): v for k, v in handler.headers.items()}, type(action).__name__)
        with self._lock:
            self.served.append(served)
        served.answered = self._respond(handler, body, action)

    def _respond(self, handler: BaseHTTPRequestHandler, body: dict, action) -> bool:
        """Carry out `action`; True when an answer was written."""
        if self.latency_s:
            time.sleep(self.latency_s)
        while isinstance(action, Delay):
            time.sleep(action.seconds)
            action = action.then if action.then is not None else self.responder(body)
        if isinstance(action, Hang):
            time.sleep(action.seconds)  # the client gives up first; then drop the connection
        if isinstance(action, (Hang, Drop)) or self._stopping.is_set():  # a stopped server answers nothing
            handler.close_connection = True
            return False
        if isinstance(action, Status):
            headers = {"retry-after": action.retry_after} if action.retry_after else {}
            payload = {"error": {"message": action.message, "type": "scripted", "code": action.code}}
            self._send(handler, action.code, json.dumps(payload).encode(), headers)
            return True
        if isinstance(action, MalformedBody):
            self._send(handler, 200, action.body)
            return True
        reply: Reply = action
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        payload = {
            "id": f"chatcmpl-{len(self.served)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                         "message": {"role": "assistant", "content": reply.content}}],
            "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(reply.content) // 4,
                      "total_tokens": prompt_chars // 4 + len(reply.content) // 4},
        }
        self._send(handler, 200, json.dumps(payload).encode())
        return True

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, data: bytes, headers: Optional[dict] = None) -> None:
        handler.send_response(code)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)



class Gateway:
    """A reverse proxy in front of a server, as nginx or LiteLLM is: it forwards each request and, when the server
    behind it cannot be reached, answers 502 Bad Gateway itself (an HTML page, as nginx's is). `gateway_errors`
    counts those."""

    PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"

    def __init__(self, backend: FakeOpenAI):
        self.backend = backend
        self.gateway_errors = 0
        self._httpd: Optional[ThreadingHTTPServer] = None

    def __enter__(self) -> "Gateway":
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                gateway._forward(self, "GET", b"")

            def do_POST(self):
                gateway._forward(self, "POST", self.rfile.read(int(self.headers.get("content-length", 0))))

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _forward(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        import http.client

        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        try:
            upstream = http.client.HTTPConnection("127.0.0.1", self.backend.port, timeout=30)
            upstream.request(method, handler.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            code, data, kind = answer.status, answer.read(), answer.getheader("content-type", "application/json")
            upstream.close()
        except (OSError, http.client.HTTPException):  # refused, or cut before a whole answer: the server is gone
            self.gateway_errors += 1
            code, data, kind = 502, self.PAGE, "text/html"
        handler.send_response(code)
        handler.send_header("content-type", kind)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


if __name__ == "__main__":  # a standalone server for benchmarks: prints its base URL, serves until killed
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with FakeOpenAI(latency_s=args.latency) as srv:
        print(srv.base_url, flush=True)
        threading.Event().wait()
