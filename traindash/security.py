"""CURVE encryption and authentication for trainers on other hosts (pyzmq ``zmq.auth``).

The collector, given its secret certificate and a directory of allowed client public
certificates, makes all three of its sockets CURVE servers; a ZAP authenticator admits
only allow-listed keys and logs every refusal. Clients (trainers, the CLI, the ui and
alerts services) set ``TRAINDASH_CURVE_CLIENT`` (their secret certificate) and
``TRAINDASH_CURVE_SERVER`` (the collector's public certificate).
"""

from __future__ import annotations

import logging
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from traindash.config import ConfigError, CurveClient, curve_client

log = logging.getLogger("traindash.security")

HANDSHAKE_FAILURES = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def make_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Create ``<name>.key`` (public) and ``<name>.key_secret`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def _load(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read CURVE certificate {path}: {exc}") from None
    if need_secret and not secret:
        raise ConfigError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def secure_server(sock: zmq.Socket, secret_file: Path) -> None:
    public, secret = _load(secret_file, need_secret=True)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_server = True


def secure_client(sock: zmq.Socket, client: CurveClient | None = None) -> None:
    """Make ``sock`` a CURVE client when keys are configured (a no-op otherwise)."""
    client = client or curve_client()
    if client is None:
        return
    public, secret = _load(client.client_secret_file, need_secret=True)
    server_public, _ = _load(client.server_public_file, need_secret=False)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = server_public


class _DenialLog:
    """pyzmq's authenticator logs refusals at debug level; traindash wants them seen."""

    def debug(self, msg: str, *args: object) -> None:
        text = msg % args if args else msg
        if text.startswith("DENIED"):
            log.warning("refused a connection: %s", text)

    def info(self, msg: str, *args: object) -> None:
        log.info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        log.warning(msg, *args)

    def error(self, msg: str, *args: object) -> None:
        log.error(msg, *args)

    def exception(self, msg: str, *args: object) -> None:
        log.exception(msg, *args)


def start_authenticator(ctx: zmq.Context, allow_dir: Path) -> ThreadAuthenticator:
    if not allow_dir.is_dir() or not any(allow_dir.glob("*.key")):
        raise ConfigError(f"{allow_dir} holds no allowed public keys (*.key files)")
    auth = ThreadAuthenticator(ctx, log=_DenialLog())
    auth.start()
    auth.configure_curve(domain="*", location=str(allow_dir))
    return auth


def describe_event(event: dict) -> str:
    names = {
        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed (protocol: plaintext or wrong mechanism?)",
        zmq.EVENT_HANDSHAKE_FAILED_AUTH: "authentication failed",
    }
    return f"{names.get(event.get('event', 0), 'handshake failed')} on {event.get('endpoint')!r}"
