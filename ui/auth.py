"""Who may open the dashboard: nobody but loopback, unless a login protects it.

The dashboard shows every run and answers SQL, so a server reachable from other hosts needs
a login. Loopback is exactly ``127.0.0.1``, ``::1`` and ``localhost``; any other bind address
(``0.0.0.0``, a LAN address, even ``127.0.0.2``) requires ``TRAINDASH_UI_PASSWORD``, unless
``--no-auth`` says, explicitly, that something else guards it. With a password set, the login
is required on loopback too. Panel's basic-auth provider serves the login form; sessions are
signed cookies with a secret made anew at each start (logins end with the server).
"""

from __future__ import annotations

import secrets
from typing import Any

from traindash.config import ConfigError, UIConfig

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
MIN_PASSWORD = 12
MIN_DISTINCT = 5


def weak(password: str) -> str | None:
    """Why a password is too weak to guard the dashboard, or None."""
    if len(password) < MIN_PASSWORD:
        return f"it is shorter than {MIN_PASSWORD} characters"
    if len(set(password)) < MIN_DISTINCT:
        return f"it has fewer than {MIN_DISTINCT} different characters"
    return None


def auth_options(config: UIConfig) -> dict[str, Any]:
    """``pn.serve`` keyword arguments for the login this config needs ({} for none).

    Raises ConfigError, in one line, for a non-loopback bind with no password (and no
    ``--no-auth``) or with a weak one.
    """
    if config.no_auth:
        return {}
    password = config.password
    if password is None:
        if config.host in LOOPBACK:
            return {}
        raise ConfigError(
            f"--host {config.host} is reachable from other machines and the dashboard shows every run: "
            f"set TRAINDASH_UI_PASSWORD (at least {MIN_PASSWORD} characters) to require a login, "
            "or pass --no-auth if something else guards it"
        )
    reason = weak(password)
    if reason:
        raise ConfigError(f"TRAINDASH_UI_PASSWORD is too weak: {reason}")
    return {"basic_auth": {config.user: password}, "cookie_secret": secrets.token_urlsafe(32)}


def local_url(config: UIConfig) -> str:
    """A URL this machine can reach the server at (a wildcard bind is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(config.host, config.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.port}"
