"""Trusted roots (trust anchors): list, add (a certificate or a bundle), remove; what
``smimegate root``, the Roots tab and /api/v1/roots do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from smimegate.dn import name_string
from smimegate.service import audit, certificates
from smimegate.service.actor import Actor
from smimegate.service.errors import OperationFailed
from smimegate.store import CertificateRecord, Store


def may_be_root(cert: x509.Certificate) -> bool:
    """A CA certificate (RFC 5280 4.2.1.9), or a self-issued v1-style one without the
    extension."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return cert.subject == cert.issuer


def listing(store: Store, revocation_mode: str | None = None) -> list[dict[str, Any]]:
    """As ``root list --json``: each root as ``cert show --json`` describes a certificate."""
    anchors = certificates.anchors_of(store, revocation_mode)
    return [certificates.describe(r, anchors) for r in store.list_roots()]


@dataclass
class RootReport:
    name: str
    trusted: list[CertificateRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line each, naming the item


def add_parsed(store: Store, actor: Actor, found: Any, name: str) -> RootReport:
    """Trust every CA certificate of a parsed file (smimegate.pki.certfile). One that is not a
    CA or cannot be read is named in problems; each root with its audit row is its own
    transaction, so the good ones of a bundle are trusted whole even when another is refused.
    Raises OperationFailed when the file holds a private key, Forbidden."""
    actor.require_change()
    if found.pairs:
        raise OperationFailed(f"{name}: holds a private key; a root needs the certificate only")
    report = RootReport(name)
    for cert in found.certificates:
        if not may_be_root(cert):
            report.problems.append(
                f"{name}: {name_string(cert.subject)} is not a CA certificate; import "
                "end-entity certificates with `smimegate cert import`")
            continue
        with store.atomic():
            record = store.add_root(cert)
            audit.record(store, actor, "root.add", record.fingerprint, record.subject)
        report.trusted.append(record)
    report.problems += [u.describe(name) for u in found.unreadable]
    return report


def add_data(store: Store, actor: Actor, data: bytes, name: str) -> RootReport:
    """add_parsed for an uploaded PEM, DER or PKCS#7 file."""
    actor.require_change()
    return add_parsed(store, actor, certificates.read_upload(data, name, None), name)


@audit.atomic
def remove(store: Store, actor: Actor, text: str) -> str:
    """Stop trusting a root (the certificate stays stored); returns its fingerprint.
    Raises InvalidInput, OperationFailed (no such root), Forbidden."""
    actor.require_change()
    fingerprint = certificates.pick(store.list_roots(), text, "trusted root")
    store.remove_root(fingerprint)
    audit.record(store, actor, "root.remove", fingerprint)
    return fingerprint
