"""A loopback HTTP proxy that can cut a request off after the server has answered it: the old
system's "ECONNRESET" (a load balancer dropping the connection), reproduced for a real browser.
It can also hold requests back until the test releases them (files kept "in flight" while the
test changes the world around them).

Each request is forwarded on a fresh upstream connection (`Connection: close`) and answered on a
connection that is closed afterwards, so a browser never reuses a connection (and never replays a
request by itself). For a request that `cut` selects, the upstream's complete answer is read (the
server did its work: rows written) and then the browser's connection is reset (SO_LINGER 0: RST).
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Callable

HEAD_LIMIT = 64 * 1024
BODY_LIMIT = 16 * 1024 * 1024
TIMEOUT_SECONDS = 30


class ProxyError(Exception):
    pass


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ProxyError("connection closed before a request head arrived")
        data += chunk
        if len(data) > HEAD_LIMIT:
            raise ProxyError("request head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _content_length(lines: list[bytes]) -> int:
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class CuttingProxy:
    def __init__(
        self, upstream_port: int, cut: Callable[[str, str], bool], hold: Callable[[str, str], bool] | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.cut = cut
        self.hold = hold
        self.cut_requests: list[str] = []
        self.forwarded: list[str] = []
        self.held: list[str] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def release(self) -> None:
        """Let the held requests (and every later one) through."""
        self._released.set()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handle(self, client: socket.socket) -> None:
        client.settimeout(TIMEOUT_SECONDS)
        try:
            head, body = _read_head(client)
        except (ProxyError, OSError):
            return
        lines = head.split(b"\r\n")
        method, path, _version = lines[0].decode("latin-1").split(" ", 2)
        length = _content_length(lines)
        if length > BODY_LIMIT:
            client.close()
            return
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            body += chunk
        kept = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")]
        request = b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n" + body
        label = f"{method} {path}"
        if self.hold is not None and self.hold(method, path) and not self._released.is_set():
            with self._lock:
                self.held.append(label)
            self._released.wait(TIMEOUT_SECONDS)
        answer = self._forward(request)
        if self.cut(method, path):
            with self._lock:
                self.cut_requests.append(label)
            # RST instead of FIN: the browser sees the connection reset, with no answer at all.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        with self._lock:
            self.forwarded.append(label)
        try:
            client.sendall(answer)
        finally:
            client.close()

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=TIMEOUT_SECONDS) as upstream:
            upstream.sendall(request)
            chunks = []
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)
