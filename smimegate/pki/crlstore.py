"""Keeping CRLs in the store: every well-formed CRL, from import, download or a message
(issue 10 item 1; RFC 8551 2.4.5: receiving agents keep the CRLs that come with messages).

A CRL is kept whether or not its issuer is known: an administrator imports the CRLs of a partner
CA before any message has brought its intermediate certificates. What the store records is
whether a stored CA certificate of the issuer's name signed it (``verified``: True / False, or
None while no CA of that name is known; RFC 5280 6.3.3 (f): name, key identifier, cRLSign,
signature). Trust decisions do not rely on that column: they check each CRL's signature with the
certificate of the path (smimegate.pki.revocation); the column is for listings and for the
store's rule that only a verified CRL replaces an older one of the same issuer, key and scope
(an unverified CRL cannot prove it supersedes anything).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from smimegate.pki.crlindex import SIGNING_KEYS, name_key
from smimegate.pki.paths import CaIndex, Node, node_of
from smimegate.store.base import CrlRecord, InvalidData, Store
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS, X509_ERRORS

__all__ = ["BundleItem", "CrlKeeper", "read_bundle"]

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


@dataclass(frozen=True)
class BundleItem:
    """One CRL of a file: parsed, or why it could not be (``problem``)."""

    index: int
    crl: x509.CertificateRevocationList | None
    problem: str | None = None


def read_bundle(data: bytes) -> list[BundleItem]:
    """The CRLs of a file: DER (one CRL), PEM, or several PEM blocks (a bundle).

    Each block that cannot be read is an item with its problem; a file with no CRL at all is
    one such item. Never raises.
    """
    blocks = _PEM_CRL.findall(data)
    if not blocks:
        if data.lstrip().startswith(b"-----BEGIN"):
            return [BundleItem(1, None, "no PEM block 'X509 CRL' in the file")]
        try:
            return [BundleItem(1, x509.load_der_x509_crl(data))]
        except X509_ERRORS as exc:
            return [BundleItem(1, None, f"not a CRL in DER or PEM: {exc}")]
    items: list[BundleItem] = []
    for number, block in enumerate(blocks, 1):
        try:
            items.append(BundleItem(number, x509.load_pem_x509_crl(block)))
        except X509_ERRORS as exc:
            items.append(BundleItem(number, None, f"unreadable CRL: {exc}"))
    return items


class CrlKeeper:
    """Stores CRLs with what is known of their signature (see the module docstring).

    Reads the store's CA certificates once (on first use) for all the CRLs it keeps, so that a
    bundle of 173 CRLs costs one query. Not thread-safe: one per import or download run.
    """

    def __init__(self, store: Store, extra_cas: Sequence[x509.Certificate] = ()) -> None:
        self._store = store
        self._extra = tuple(extra_cas)
        self._cas: CaIndex | None = None

    def _index(self) -> CaIndex:
        if self._cas is None:
            roots = {r.fingerprint for r in self._store.list_roots()}
            nodes: list[Node] = []
            for record in self._store.ca_certificates():
                if record.blocked:
                    continue
                try:
                    nodes.append(node_of(record.certificate(),
                                         is_root=record.fingerprint in roots))
                except ValueError:
                    continue
            for cert in self._extra:
                try:
                    nodes.append(node_of(cert))
                except ValueError:
                    continue
            self._cas = CaIndex(nodes)
        return self._cas

    def verified(self, crl: x509.CertificateRevocationList) -> bool | None:
        """What ``verified`` the store records for crl now: whether a CA certificate of its
        issuer's name signed it (key identifier, cRLSign, signature); None when none is
        known. Raises InvalidData when its issuer name cannot be read."""
        try:
            # cryptography parses the issuer name when asked, not at load.
            issuer = name_key(crl.issuer)
        except X509_ERRORS as exc:
            raise InvalidData(f"malformed CRL: {exc}") from None
        named = self._index().named(issuer)
        if not named:
            return None
        try:
            aki = crl.extensions.get_extension_for_class(
                x509.AuthorityKeyIdentifier).value.key_identifier
        except EXTENSION_LOOKUP_ERRORS:
            aki = None
        for node in named:
            if not node.crl_sign or (aki is not None and node.ski is not None
                                     and aki != node.ski):
                continue
            try:
                key = node.cert.public_key()
                if isinstance(key, SIGNING_KEYS) and crl.is_signature_valid(key):
                    return True
            except X509_ERRORS + (UnsupportedAlgorithm,):
                # A stored CA certificate whose key does not parse (cert import keeps what
                # it can read; a message can carry anything) signs nothing: the others of
                # that name are still tried.
                continue
        return False

    def keep(self, crl: x509.CertificateRevocationList | bytes, source: str) -> CrlRecord:
        """Store crl (idempotent) and return the store's record: the newest of its issuer, key
        and scope when it is verified (which may be another one), else crl's own record.
        Raises InvalidData for a CRL that cannot be read; StoreError from the store."""
        if not isinstance(crl, x509.CertificateRevocationList):
            try:
                crl = x509.load_der_x509_crl(bytes(crl))
            except X509_ERRORS as exc:
                raise InvalidData(f"malformed CRL: {exc}") from None
        return self._store.add_crl(crl, source=source, verified=self.verified(crl))
