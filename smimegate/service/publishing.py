"""Publishing a certificate the built-in CA issued to the directory, when ``[ldap]
publish_certificates`` names attributes; part of ``cert issue`` in every front end (the CLI,
the Certificates tab, ``POST /api/v1/certificates/issue``), so all three publish alike.

It runs after the certificate and its audit row are committed: a directory that cannot be
written does not undo an issued certificate (the key is in escrow, the CRL can revoke it),
and no store transaction is held open over the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

    from smimegate.config import Config


@dataclass(frozen=True)
class Published:
    """What publishing did: the entry written and its attributes, or why it failed."""

    dn: str | None
    attributes: tuple[str, ...]
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"not published to the directory: {self.error}"
        return f"published to {self.dn} ({', '.join(self.attributes)})"


def publish_issued(config: Config, email: str, cert: x509.Certificate,
                   chain: Sequence[x509.Certificate] = ()) -> Published | None:
    """Publish cert (with its chain, for userSMIMECertificate) on email's directory entry;
    None when publishing is off. Never raises for the directory: a failure is returned in
    Published.error for the front end to show."""
    if not (config.ldap.enabled and config.ldap.publish_certificates):
        return None
    # Imported here: ldap3 is needed only when a directory is configured (issue 9).
    from smimegate.store.ldap import DirectoryError, DirectoryUsers

    attributes = tuple(config.ldap.publish_certificates)
    try:
        directory = DirectoryUsers(config.ldap)
        try:
            dn = directory.publish_certificate(email, cert, chain)
        finally:
            directory.close()
    except DirectoryError as exc:
        return Published(None, attributes, " ".join(str(exc).split()))
    return Published(dn, attributes)
