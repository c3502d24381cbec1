"""How certificates are named on the command line and shown by cert and root commands.

A FINGERPRINT argument is the SHA-256 of the DER in hex (colons, spaces and either case
allowed, as ``openssl x509 -fingerprint -sha256`` prints it), or a unique prefix of at least
8 hex digits of it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from smimegate.service import certificates

if TYPE_CHECKING:
    from smimegate.pki.certfile import Unreadable

# Moved to the service layer, which the web and the API use too; named here for the commands.
normal_fingerprint = certificates.normal_fingerprint
pick = certificates.pick
describe = certificates.describe


def line(item: dict[str, Any]) -> str:
    """One line of a text listing."""
    flags = [
        "trusted" if item["trusted"] else "untrusted",
        *(["key"] if item["has_key"] else []),
        *(["root"] if item["trusted_root"] else []),
        *(["ca"] if item["is_ca"] and not item["trusted_root"] else []),
        *(["blocked"] if item["blocked"] else []),
    ]
    emails = ",".join(item["emails"]) or "-"
    return (f"{item['fingerprint']}  {emails}  {item['subject']}  "
            f"until {item['not_after'][:10]}  [{' '.join(flags)}]")


def report_unreadable(path: str, unreadable: Sequence[Unreadable]) -> int:
    """Name each certificate of a file that could not be read, one line each on stderr as
    CONTRACT.md asks of ``cert import``; return how many there were."""
    for item in unreadable:
        print(f"smimegate: error: {item.describe(path)}", file=sys.stderr)
    return len(unreadable)
