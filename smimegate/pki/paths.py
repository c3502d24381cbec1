"""CA certificates indexed by subject and key id, and candidate certification paths built from
them (issue 10 item 2: the cost of a check must not grow with the store).

pyhanko-certvalidator builds paths over every certificate it is given, converted to asn1crypto
for each check; with hundreds of CA certificates that dominated every message. Here the CA
certificates are read once per load into ``CaIndex`` (by subject in RFC 5280 7.1 comparison form,
with subject key identifier, and whether each may sign CRLs), and ``candidate_paths`` walks from
a certificate up to a trusted root through the issuers whose name, key identifier (RFC 5280
4.2.1.1) and signature fit, each signature checked once per process (SignatureMemo). pyhanko then
validates one fixed path (RFC 5280 6.1) instead of searching.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.pki.crlindex import SignatureMemo, name_key
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS

__all__ = ["MAX_DEPTH", "MAX_PATHS", "CaIndex", "Node", "candidate_paths", "node_of"]

MAX_DEPTH = 12
"""Longest path tried (certificates, leaf and root included)."""
MAX_PATHS = 8
"""Most candidate paths handed to validation for one certificate (cross-certified CAs)."""


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except EXTENSION_LOOKUP_ERRORS:
        return None


@dataclass(frozen=True, eq=False)
class Node:
    """A certificate with what path building and CRL checks ask of it, computed once."""

    cert: x509.Certificate
    der: bytes
    fingerprint: str
    subject_key: str
    issuer_key: str
    ski: bytes | None
    aki: bytes | None
    is_ca: bool
    crl_sign: bool
    is_root: bool = False

    @property
    def self_issued(self) -> bool:
        return self.subject_key == self.issuer_key


def node_of(cert: x509.Certificate, *, is_root: bool = False) -> Node:
    """A Node for cert. Raises ValueError for a certificate whose names cannot be read."""
    der = cert.public_bytes(Encoding.DER)
    ski = _ext(cert, x509.SubjectKeyIdentifier)
    aki = _ext(cert, x509.AuthorityKeyIdentifier)
    basic = _ext(cert, x509.BasicConstraints)
    usage = _ext(cert, x509.KeyUsage)
    # RFC 5280 4.2.1.9: version 1 certificates have no extensions and may still be CAs
    # (old roots); 4.2.1.3: without keyUsage every use is allowed.
    is_ca = (bool(basic.ca) if isinstance(basic, x509.BasicConstraints)
             else cert.version == x509.Version.v1)
    # RFC 5280 4.2.1.3 and 6.3.3 (f): cRLSign is what lets a key sign CRLs; a CRL issuer need
    # not be a CA (PKITS 4.4.19: a CA's separate CRL signing certificate without
    # basicConstraints). Without keyUsage, only a CA certificate counts.
    crl_sign = usage.crl_sign if isinstance(usage, x509.KeyUsage) else is_ca
    return Node(
        cert=cert,
        der=der,
        fingerprint=hashlib.sha256(der).hexdigest(),
        subject_key=name_key(cert.subject),
        issuer_key=name_key(cert.issuer),
        ski=ski.digest if isinstance(ski, x509.SubjectKeyIdentifier) else None,
        aki=aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None,
        is_ca=is_ca,
        crl_sign=crl_sign,
        is_root=is_root,
    )


class CaIndex:
    """Roots and other CA certificates by subject name key (immutable once built)."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        by_subject: dict[str, list[Node]] = {}
        seen: set[str] = set()
        for node in nodes:
            if node.fingerprint in seen:
                continue
            seen.add(node.fingerprint)
            by_subject.setdefault(node.subject_key, []).append(node)
        self._by_subject = {k: tuple(v) for k, v in by_subject.items()}
        self.fingerprints = frozenset(seen)
        self.root_fingerprints = frozenset(
            n.fingerprint for group in self._by_subject.values() for n in group if n.is_root)

    def named(self, key: str) -> tuple[Node, ...]:
        """The certificates whose subject is the name ``key`` (roots first)."""
        return self._by_subject.get(key, ())

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_subject.values())


def _issuers(node: Node, index: CaIndex, extra: dict[str, list[Node]], moment: datetime,
             memo: SignatureMemo) -> list[Node]:
    """Certificates that may have issued node: name and key identifier fit. Those whose key
    verifies node's signature first (a bad signature still makes a path, so that validation
    can say "bad signature in chain"), then roots, then those valid at moment, newest first."""
    found: list[tuple[bool, Node]] = []
    for candidate in (*index.named(node.issuer_key), *extra.get(node.issuer_key, ())):
        if node.aki is not None and candidate.ski is not None and node.aki != candidate.ski:
            continue
        if candidate.fingerprint == node.fingerprint:
            continue
        signed = memo.cert_signed_by(node.cert, node.fingerprint, candidate.cert,
                                     candidate.fingerprint)
        found.append((signed, candidate))

    def rank(item: tuple[bool, Node]) -> tuple[bool, bool, bool, float]:
        signed, n = item
        valid = n.cert.not_valid_before_utc <= moment <= n.cert.not_valid_after_utc
        return (not signed, not n.is_root, not valid, -n.cert.not_valid_before_utc.timestamp())

    return [n for _, n in sorted(found, key=rank)]


def candidate_paths(leaf: Node, index: CaIndex, extra: Sequence[Node], moment: datetime,
                    memo: SignatureMemo) -> Iterator[tuple[Node, ...]]:
    """Paths from leaf up to a trusted root (leaf first, root last), at most MAX_PATHS of
    them, most plausible first. A leaf that is itself a root is the path (leaf,)."""
    if leaf.fingerprint in index.root_fingerprints:
        yield (leaf,)
        return
    by_subject: dict[str, list[Node]] = {}
    for node in extra:
        by_subject.setdefault(node.subject_key, []).append(node)
    count = 0

    def walk(chain: tuple[Node, ...]) -> Iterator[tuple[Node, ...]]:
        nonlocal count
        if len(chain) >= MAX_DEPTH:
            return
        used = {n.fingerprint for n in chain}
        for issuer in _issuers(chain[-1], index, by_subject, moment, memo):
            if count >= MAX_PATHS:
                return
            if issuer.fingerprint in used:
                continue
            if issuer.is_root:
                count += 1
                yield (*chain, issuer)
            else:
                yield from walk((*chain, issuer))

    yield from walk((leaf,))
