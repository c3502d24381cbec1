"""What cryptography raises for a certificate or CRL it cannot read.

Loading is lazy: ``load_der_x509_certificate`` and ``load_der_x509_crl`` check the outer
structure, and the version, the names and the extensions are parsed when first asked for.
Most problems are ValueErrors, but a version other than v1-v3 (``InvalidVersion``), an
extension given twice (``DuplicateExtension``, RFC 5280 4.2) and a GeneralName of an unknown
kind (``UnsupportedGeneralNameType``) are not. Everything that reads a certificate or CRL
from outside (a message, an upload, a download, the DNS, the directory) catches all four,
so that none of them reaches a message's path as an internal error.
"""

from __future__ import annotations

from cryptography import x509

X509_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def check_readable(cert: x509.Certificate) -> x509.Certificate:
    """``cert`` once its version, names and extensions have parsed: what comes from outside
    is checked here, where it enters, so that nothing later meets a certificate that fails
    when asked for its issuer or key usage (RFC 5280 4.2: a certificate with an extension
    that cannot be read, or one given twice, is not to be used). Raises one of X509_ERRORS."""
    _ = cert.version, cert.subject, cert.issuer, cert.extensions
    return cert

# For ``extensions.get_extension_for_class``: the extension absent, or the set unreadable.
EXTENSION_LOOKUP_ERRORS: tuple[type[Exception], ...] = (x509.ExtensionNotFound, *X509_ERRORS)
