"""A tiny real HTTP server on 127.0.0.1 that answers what a test tells it to: any status,
any body, whole, trickled byte by byte, or without end (until the client hangs up).

`serving()` starts one for a test; `shared()` is one server for the whole process, whose
answers each example replaces (starting and stopping a server per example would cost more
than the example: the deep fuzz run makes ten thousand). A trickled or endless answer ends
when its client hangs up, so one example's slow answer never outlives it for long."""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    how: str = "whole"  # whole | slow (a byte at a time) | endless | gzip-garbage | no-length


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without this, Nagle's algorithm and the
    # client's delayed ACK hold every answer back ~40 ms
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        answer = self.server.answers.get(f"{self.command} {path}") or \
            self.server.answers.get(path) or self.server.default
        # the client giving up (BrokenPipe) is what the slow and endless answers are for
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(answer)

    def _send(self, answer: Answer) -> None:
        self.send_response_only(answer.status)
        self.send_header("Content-Type", answer.content_type)
        if answer.how in ("whole", "gzip-garbage"):
            if answer.how == "gzip-garbage":
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            return
        self.send_header("Connection", "close")
        self.close_connection = True
        if answer.how == "no-length":
            self.end_headers()
            self.wfile.write(answer.body)
            return
        self.send_header("Content-Length", str(len(answer.body) + 10**12))
        self.end_headers()
        if answer.how == "slow":  # every byte in time for the read timeout, never finished
            while not self.server.stopping.is_set():
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(self.server.trickle_s)
        else:  # endless: as fast as a busy server, never finished
            chunk = b"[" * 65536
            while not self.server.stopping.is_set():
                self.wfile.write(chunk)
                time.sleep(0.01)

    do_GET = do_POST = do_DELETE = do_PUT = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    answers: dict[str, Answer]
    default: Answer
    stopping: threading.Event
    trickle_s: float = 0.05  # between the bytes of a slow answer

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up mid-request is what the tests do on purpose: no traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def serving() -> Iterator[_Server]:
    """The server; set `.answers` ({"GET /path" or "/path": Answer}) and `.default`."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.answers, server.default, server.stopping = {}, Answer(404, b"{}"), threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


_SHARED: list[_Server] = []


def shared(trickle_s: float = 0.05) -> _Server:
    """The process's shared server (started on first use, stopped at exit); the caller sets
    `.answers` for each example."""
    if not _SHARED:
        context = serving()
        server = context.__enter__()
        atexit.register(context.__exit__, None, None, None)
        _SHARED.append(server)
    server = _SHARED[0]
    server.trickle_s = trickle_s
    return server


def url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"
