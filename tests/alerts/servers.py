"""Real loopback stand-ins for the outside world: a Slack-like HTTP server and an SMTP server."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.harness import free_port


@dataclass
class SlackRequest:
    t: float
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


class SlackStub:
    """Stands in for Slack's servers: webhook posts and ``chat.postMessage`` on 127.0.0.1.

    ``script`` holds (status, headers) answers used in order; once it is empty every
    request gets 200. ``delay`` holds each answer back that many seconds.
    """

    def __init__(self) -> None:
        self.requests: list[SlackRequest] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.delay = 0.0
        self.release = threading.Event()  # ends every delay at once (set on close)
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                with stub.lock:
                    stub.requests.append(SlackRequest(time.monotonic(), self.path, body, dict(self.headers)))
                    status, headers = stub.script.pop(0) if stub.script else (200, {})
                if stub.delay:
                    stub.release.wait(stub.delay)
                api = self.path.startswith("/api/") or "chat." in self.path
                text = (
                    json.dumps({"ok": status == 200, "error": None if status == 200 else "ratelimited"})
                    if api
                    else ("ok" if status == 200 else "error")
                ).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json" if api else "text/plain")
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the client gave up (a test stopped it); nothing to answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/services/T000/B000/secretpart"
        self.api_url = f"http://127.0.0.1:{self.port}/api/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def texts(self) -> list[str]:
        with self.lock:
            return [r.body.get("text", "") for r in self.requests]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class Mail:
    t: float
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    tls: bool
    login: str | None


@dataclass
class MailHandler:
    """Collects messages; ``rcpt_script`` / ``data_script`` answers (e.g. "451 ...") go first."""

    mails: list[Mail] = field(default_factory=list)
    rcpt_script: list[str] = field(default_factory=list)
    data_script: list[str] = field(default_factory=list)
    attempts: int = 0
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        self.attempts += 1
        if self.rcpt_script:
            return self.rcpt_script.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.data_script:
            return self.data_script.pop(0)
        login = session.auth_data.decode() if session.authenticated else None
        self.mails.append(
            Mail(
                time.monotonic(),
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.content),
                session.ssl is not None,
                login,
            )
        )
        return "250 Message accepted"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(success=False, handled=False)


class MailServer:
    """aiosmtpd on 127.0.0.1; with ``tls`` it offers STARTTLS using a fresh self-signed cert."""

    def __init__(self, tmp: Path, tls: bool = False, auth: bool = False) -> None:
        self.handler = MailHandler()
        self.port = free_port()
        self.cert: Path | None = None
        kwargs: dict[str, Any] = {}
        if tls:
            self.cert, key = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                    "-keyout",
                    str(key),
                    "-out",
                    str(self.cert),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert, key)
            kwargs["tls_context"] = ctx
        if auth:
            kwargs.update(authenticator=self.handler.authenticate, auth_require_tls=False)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    @property
    def mails(self) -> list[Mail]:
        return self.handler.mails

    def email_config(self, **extra: Any) -> dict[str, Any]:
        cfg = {
            "enabled": True,
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "to_addrs": ["oncall@example.com"],
            "from_addr": "traindash@example.com",
            "timeout": 5,
        }
        cfg.update(extra)
        return cfg

    def close(self) -> None:
        self.controller.stop()
