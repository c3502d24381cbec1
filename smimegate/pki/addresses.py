"""The mail addresses a certificate speaks for, and whether a given address is one of them.

RFC 8550 3: a receiving agent checks that the From (or Sender) address of a signed message
matches an address in the signer's certificate. The result is reported on its own and never
changes whether the certificate chain is trusted (issue 4, item 1).
"""

from __future__ import annotations

from email.utils import parseaddr

from asn1crypto import core
from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from smimegate.smime.certmemo import per_certificate
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS

# RFC 8398 3: id-on-SmtpUTF8Mailbox, an otherName holding an internationalized mailbox.
SMTP_UTF8_MAILBOX = ObjectIdentifier("1.3.6.1.5.5.7.8.9")

__all__ = ["address_match", "certificate_addresses", "normalize_address"]


@per_certificate(maxsize=1024)
def certificate_addresses(cert: x509.Certificate) -> tuple[str, ...]:
    """Every mail address in ``cert``, as written there, without duplicates, SAN first.
    Remembered per certificate: a signer's comes with each of its messages, and reading the
    extensions again cost 10 us (bench/cost_bench.py).

    Looks at rfc822Name and SmtpUTF8Mailbox (RFC 8398) entries of the subjectAltName
    (RFC 5280 4.2.1.6) and at emailAddress attributes of the subject, which RFC 8550 3 tells
    receiving agents to recognize as well. Unreadable extensions or values are skipped, so this
    never raises for a malformed certificate.
    """
    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except EXTENSION_LOOKUP_ERRORS:
        san = None
    if san is not None:
        found.extend(san.get_values_for_type(x509.RFC822Name))
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == SMTP_UTF8_MAILBOX:
                try:
                    value = core.UTF8String.load(other.value).native
                except ValueError:
                    continue
                if isinstance(value, str):
                    found.append(value)
    try:
        attributes = cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    except ValueError:
        attributes = []
    for attribute in attributes:
        if isinstance(attribute.value, str):
            found.append(attribute.value)
    return tuple(dict.fromkeys(found))


def normalize_address(address: str) -> str | None:
    """A comparable form of ``address`` (``Name <a@b>`` or a bare ``a@b``), or None if unusable.

    The domain is lower-cased and put into its IDNA (A-label) form, so ``bücher.example`` and
    ``xn--bcher-kva.example`` compare equal. The local part is case-folded too: RFC 5280 7.5
    calls it case-sensitive, but NSS (Thunderbird) lower-cases the addresses of certificates
    (CERT_FixupEmailAddr) and hardly any mailbox differs from another only in case, while a
    spurious "address mismatch" on ``Alice@`` vs ``alice@`` would mislead the reader.
    """
    _name, addr = parseaddr(address)
    addr = addr.strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        return None
    domain = domain.rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # not IDNA-encodable (e.g. a label too long): compare it as written, lower-cased
    return f"{local.casefold()}@{domain}"


def address_match(cert: x509.Certificate, address: str) -> bool:
    """True when ``address`` is one of the mail addresses in ``cert`` (RFC 8550 3).

    Comparison follows normalize_address. A certificate without any address, or an address
    that cannot be parsed, does not match. Never raises for malformed input.
    """
    wanted = normalize_address(address)
    if wanted is None:
        return False
    return any(normalize_address(found) == wanted for found in certificate_addresses(cert))
