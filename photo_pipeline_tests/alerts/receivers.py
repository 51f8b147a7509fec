"""Destinations that the tests own: a JSON webhook (what Apprise's json:// posts to) and an SMTP
server (aiosmtpd), both on 127.0.0.1 port 0, each recording what it received."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class JsonReceiver:
    """Answers each POST with the next of `statuses` (200 once they run out) and records the
    JSON bodies it answered 2xx to (what the destination "took")."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> JsonReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.paths.append(self.path)
                (receiver.received if status < 300 else receiver.refused).append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def url(self, path: str = "/hooks/alerts-Zq9xSECRET") -> str:
        """An Apprise json:// URL with a credential and a token in its path, as real ones have."""
        return f"json://alerts:pw-SECRET-1234@127.0.0.1:{self.port}{path}"

    def titles(self) -> list[str]:
        return [str(body["title"]) for body in self.received]


@dataclass
class SmtpReceiver:
    """aiosmtpd on its own event loop thread; `messages` are the e-mails it accepted."""

    messages: list[Any] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.base_events.Server | None = None

    def start(self) -> SmtpReceiver:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        receiver = self

        class Handler:
            async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's name)
                receiver.messages.append(message_from_bytes(envelope.original_content or b"", policy=policy.default))
                return "250 OK"

        def serve() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                loop.create_server(lambda: SMTP(Handler(), hostname="127.0.0.1"), "127.0.0.1", 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        assert ready.wait(10), "the SMTP server did not start"
        self._loop = loop
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            server, loop = self._server, self._loop

            async def close() -> None:
                server.close()
                await server.wait_closed()

            asyncio.run_coroutine_threadsafe(close(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)

    def url(self) -> str:
        # Plain SMTP on loopback (mode=insecure): no TLS to set up in a test.
        return f"mailto://127.0.0.1:{self.port}?from=alerts@example.com&to=ops@example.com&mode=insecure"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
