"""How certificates are named on the command line and shown by cert and root commands.

A FINGERPRINT argument is the SHA-256 of the DER in hex (colons, spaces and either case
allowed, as ``openssl x509 -fingerprint -sha256`` prints it), or a unique prefix of at least
8 hex digits of it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from smimegate.cli.common import OperationFailed, UsageError

if TYPE_CHECKING:
    from smimegate.pki.certfile import Unreadable
    from smimegate.pki.trust import TrustAnchors
    from smimegate.store import CertificateRecord

MIN_PREFIX = 8
_HEX = re.compile(r"[0-9a-f]+")


def normal_fingerprint(text: str) -> str:
    """Lower-case hex without separators. Raises UsageError when it is not hex or too short."""
    cleaned = re.sub(r"[:\s]", "", text.strip().lower()).removeprefix("sha256fingerprint=")
    if not _HEX.fullmatch(cleaned) or len(cleaned) > 64:
        raise UsageError(f"not a SHA-256 fingerprint: {text!r} (64 hex digits, colons allowed)")
    if len(cleaned) < MIN_PREFIX:
        raise UsageError(
            f"fingerprint {text!r} is too short: give at least {MIN_PREFIX} hex digits"
        )
    return cleaned


def pick(records: Sequence[CertificateRecord], text: str, what: str = "certificate") -> str:
    """The full fingerprint among records that text names (whole or unique prefix).

    Raises UsageError (malformed, ambiguous), OperationFailed (no such certificate).
    """
    wanted = normal_fingerprint(text)
    found = [r.fingerprint for r in records if r.fingerprint.startswith(wanted)]
    if not found:
        raise OperationFailed(f"no {what} with fingerprint {wanted}")
    if len(found) > 1:
        raise UsageError(f"fingerprint prefix {wanted} matches {len(found)} {what}s; give more")
    return found[0]


def describe(record: CertificateRecord, anchors: TrustAnchors) -> dict[str, Any]:
    """The JSON object CONTRACT.md fixes for ``cert list --json``, plus a few more fields."""
    from smimegate.pki import storetrust  # path validation: pyhanko-certvalidator

    verdict = storetrust.verdict(record, anchors)
    return {
        "fingerprint": record.fingerprint,
        "emails": list(record.emails),
        "subject": record.subject,
        "issuer": record.issuer,
        "serial": record.serial,
        "not_before": record.not_before.isoformat(),
        "not_after": record.not_after.isoformat(),
        "has_key": record.has_key,
        "trusted": verdict.trusted,
        "trust_info": verdict.reason,
        "trusted_root": record.trusted_root,
        "is_ca": record.is_ca,
        "ski": record.ski,
        "source": record.source,
        "blocked": record.blocked,
    }


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
