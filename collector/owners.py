"""Which CURVE public key opened each run: pure logic, no I/O.

Under CURVE the ZAP authenticator tells the collector the public key (Z85) of the peer
that sent each message (the frame's ``User-Id``). The first key to send a batch or a
heartbeat for a run owns it; a batch or heartbeat for that run from any other key is
refused, so a producer holding an allowed key cannot move another run's mark or write
into it. The owner is stored in ``runs.owner_key`` with the commit that first carries it.
Without CURVE there are no keys, and no owners.
"""

from __future__ import annotations


class Owners:
    """Run -> owning public key, with the claims not yet committed to ``runs.owner_key``."""

    def __init__(self, owners: dict[str, str]) -> None:
        self.keys = dict(owners)
        self.saved = set(owners)

    def admit(self, run_id: str, key: str) -> bool:
        """True when ``key`` owns ``run_id`` (claiming it if nobody does yet)."""
        owner = self.keys.setdefault(run_id, key)
        return owner == key

    def unsaved(self, run_id: str) -> str | None:
        """The key to store for ``run_id`` when its claim is not committed yet."""
        return None if run_id in self.saved else self.keys.get(run_id)

    def committed(self, run_ids: set[str] | list[str]) -> None:
        self.saved.update(run_ids)
