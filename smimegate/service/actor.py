"""Who asks for a change, with which role and from where: what the audit log records and
what is checked before every change (an auditor reads everything and changes nothing)."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Literal

from smimegate.service.errors import Forbidden

Role = Literal["admin", "auditor"]
ROLES: tuple[Role, ...] = ("admin", "auditor")


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role
    via: str  # cli | web | api
    address: str  # the client's IP address; "local" for the CLI

    def may_change(self) -> bool:
        return self.role == "admin"

    def require_change(self) -> None:
        """Raises Forbidden unless the actor may change things."""
        if not self.may_change():
            raise Forbidden(f"{self.name} is an auditor: it may read, not change")


def cli_actor() -> Actor:
    """The person running the CLI: whoever can run it with the configuration may change the
    store, so the role is admin; the name is the login (the sudo caller when run with sudo)."""
    try:
        login = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        login = f"uid {os.getuid()}"
    return Actor(name=login, role="admin", via="cli", address="local")
