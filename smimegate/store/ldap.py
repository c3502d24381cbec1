"""Users, policy attributes and certificates from an LDAP directory (ldap3).

The directory sits beside the SQL store, not instead of it: private keys, CAs, CRLs and the
queue stay in SQL. ``DirectoryUsers.lookup(address)`` is what the milter asks; ``all_users()``
is what ``smimegate ldap sync`` provisions from; ``publish_certificate`` writes certificates
issued by the built-in CA to the user's entry.

Where directory values stand (smimegate.policy.resolve)::

    default -> global -> domain rule -> user row in the store -> directory ("from": "ldap")

Later levels win, property by property. Within the directory level, the user's own mapped
attributes (``[ldap.attributes] encrypt_mode = "smimegateEncryptMode"``) win over values a
group rule gives (``[[ldap.groups]]``), and of several matching group rules the first in file
order that sets a property wins. So a directory value overrides what ``smimegate user set``
stored for the same user, and a property the directory does not give falls through to the
store's user row, the domain rule and the global settings. The ``ldap`` level counts as the
user level: only user-level properties (e.g. ``phone``) may come from it.

Every value read is validated with smimegate.policy.validate; a bad one (``smimegateSign:
maybe``) is logged with its entry and attribute and ignored, never fatal. Certificates are read
from the configured attributes (``userSMIMECertificate`` as a PKCS#7 certs-only SignedData,
RFC 2798 section 2.8 / RFC 8551 section 3.6; ``userCertificate;binary`` as DER, RFC 4523
section 2.1), with and without the ``;binary`` option; unreadable values are logged and skipped.

Lookups are cached per process (``cache_ttl`` for found users, ``negative_cache_ttl`` for
unknown addresses). When the directory cannot be reached, ``lookup`` raises
DirectoryUnavailable (the milter answers 451) unless ``on_unavailable = "soft"``: then it logs a
warning and returns None, and the message is decided on the store alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from smimegate.config import LdapConfig, LdapGroup
from smimegate.policy import PolicyError, check_level, validate
from smimegate.store.ldapcache import TtlCache
from smimegate.store.ldapconn import (
    DirectoryConnection,
    DirectoryError,
    DirectoryUnavailable,
    Entry,
    escape_filter_value,
    strip_binary,
    user_filter,
)
from smimegate.x509errors import X509_ERRORS, check_readable

log = logging.getLogger("smimegate.ldap")

# [ldap.attributes] keys that are not policy properties.
MAIL = "mail"
ALTERNATE_MAIL = "alternate_mail"
CERTIFICATES = "certificates"
_NOT_PROPERTIES = frozenset({MAIL, ALTERNATE_MAIL, CERTIFICATES})

SMIME_CERTIFICATE = "userSMIMECertificate;binary"
USER_CERTIFICATE = "userCertificate;binary"
MEMBER_OF = "memberof"

__all__ = [
    "DirectoryError",
    "DirectoryUnavailable",
    "DirectoryUser",
    "DirectoryUsers",
    "escape_filter_value",
    "normalise_dn",
    "parse_certificates",
]


@dataclass(frozen=True)
class DirectoryUser:
    """A user as the directory describes it.

    email: the first ``mail`` value, lower case. addresses: every address of the user (mail and
    alternate addresses), lower case, email first. properties: validated policy values of the
    directory level (group rule values overlaid by the entry's own attributes). certificates:
    every certificate found in the certificate attributes, as stored (not checked for trust).
    groups: DNs of the configured group rules the user matched, in rule order.
    """

    dn: str
    email: str
    addresses: tuple[str, ...]
    properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    certificates: tuple[x509.Certificate, ...] = ()
    groups: tuple[str, ...] = ()


def normalise_dn(dn: str) -> str:
    """A DN for comparison: RDNs split at unescaped commas, spaces around them dropped, lower
    case (the naming attributes we meet, cn/uid/ou/dc, match case-insensitively)."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in dn:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    rdns = []
    for part in parts:
        name, _, value = part.partition("=")
        rdns.append(f"{name.strip().lower()}={value.strip().lower()}")
    return ",".join(rdns)


def parse_certificates(value: bytes, where: str = "") -> list[x509.Certificate]:
    """The certificates in one attribute value: a DER certificate, or a PKCS#7 certs-only
    SignedData (as userSMIMECertificate holds them). An unreadable value is logged and gives
    no certificates."""
    try:
        return [check_readable(x509.load_der_x509_certificate(value))]
    except X509_ERRORS:
        pass  # not a bare certificate: try PKCS#7 next
    try:
        return [check_readable(c) for c in pkcs7.load_der_pkcs7_certificates(value)]
    except X509_ERRORS:
        pass  # neither: maybe PEM text, as some tools write it
    try:
        return [check_readable(c) for c in x509.load_pem_x509_certificates(value)]
    except X509_ERRORS:
        log.warning("ldap: %s: a certificate value is neither DER, PKCS#7 nor PEM; ignored",
                    where)
        return []


def _norm_address(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


class DirectoryUsers:
    """The directory as the gateway and ``ldap sync`` use it. Thread-safe.

    Raises DirectoryError from the constructor when the password file cannot be read.
    """

    def __init__(
        self,
        config: LdapConfig,
        *,
        connection: DirectoryConnection | None = None,
        cache: TtlCache[DirectoryUser] | None = None,
    ) -> None:
        self.config = config
        self._conn = connection or DirectoryConnection(config)
        self._cache: TtlCache[DirectoryUser] = cache or TtlCache(
            config.cache_ttl, config.negative_cache_ttl
        )
        self._groups: TtlCache[frozenset[str]] = TtlCache(config.cache_ttl, 0)
        attrs = config.attributes
        self._mail = tuple(attrs.get(MAIL, ("mail",)))
        self._alternate = tuple(attrs.get(ALTERNATE_MAIL, ()))
        self._cert_attrs = tuple(attrs.get(CERTIFICATES, ()))
        self._properties: dict[str, tuple[str, ...]] = {}
        for name, descriptions in attrs.items():
            if name in _NOT_PROPERTIES or not descriptions:
                continue
            try:
                check_level(name, "user")
            except PolicyError as exc:
                log.warning("ldap: [ldap.attributes] %s is ignored: %s", name, exc)
                continue
            self._properties[name] = tuple(descriptions)
        self._requested = self._attributes_to_request()

    def _attributes_to_request(self) -> list[str]:
        wanted: list[str] = [*self._mail, *self._alternate]
        for description in self._cert_attrs:
            # Ask for both forms: servers differ in which one they answer (OpenLDAP returns
            # userCertificate;binary for either, userSMIMECertificate only without ";binary").
            base = strip_binary(description)
            wanted += [base, f"{base};binary"]
        for descriptions in self._properties.values():
            wanted += descriptions
        if any(g.member_attribute.lower() == MEMBER_OF for g in self.config.groups):
            wanted.append("memberOf")  # operational on most servers: only sent when asked for
        seen: set[str] = set()
        out = []
        for w in wanted:
            if w.lower() not in seen:
                seen.add(w.lower())
                out.append(w)
        return out

    # -- the milter's view ------------------------------------------------------------------

    def lookup(self, address: str) -> DirectoryUser | None:
        """The directory user with this address (mail or alternate), or None, cached.

        Raises DirectoryUnavailable when the directory cannot be asked, unless
        ``on_unavailable = "soft"``: then logs a warning and returns None (not cached).
        """
        key = _norm_address(address)
        hit, cached = self._cache.get(key)
        if hit:
            return cached
        try:
            user = self.fetch(key)
        except DirectoryUnavailable as exc:
            if self.config.on_unavailable == "soft":
                log.warning("ldap: directory unavailable, deciding without it for %s: %s",
                            key, exc)
                return None
            raise
        self._cache.put(key, user)
        return user

    def fetch(self, address: str) -> DirectoryUser | None:
        """Like lookup, but always asks the directory and always raises DirectoryUnavailable."""
        key = _norm_address(address)
        entries = self._conn.search(
            self.config.base_dn, user_filter(self.config.user_filter, key), self._requested
        )
        if not entries:
            return None
        if len(entries) > 1:
            entries.sort(key=lambda e: normalise_dn(e.dn))
            log.warning("ldap: %d entries match %s; using %s", len(entries), key, entries[0].dn)
        return self._user(entries[0], fallback_email=key)

    def invalidate(self, address: str | None = None) -> None:
        """Forget cached answers for one address, or all."""
        self._cache.invalidate(None if address is None else _norm_address(address))
        if address is None:
            self._groups.invalidate()

    # -- ldap sync ------------------------------------------------------------------------

    def all_users(self) -> list[DirectoryUser]:
        """Every entry under base_dn that has a mail attribute, ordered by address.

        Raises DirectoryUnavailable.
        """
        mail_filters = "".join(f"({a}=*)" for a in self._mail)  # names checked by config
        search_filter = f"(|{mail_filters})" if len(self._mail) > 1 else mail_filters
        entries = self._conn.search(
            self.config.base_dn, search_filter, self._requested, paged=True
        )
        users = [self._user(e, fallback_email="") for e in entries]
        found = sorted((u for u in users if u.email), key=lambda u: u.email)
        unique: dict[str, DirectoryUser] = {}
        for user in found:
            if user.email in unique:
                log.warning("ldap: %s and %s share the address %s; using the first",
                            unique[user.email].dn, user.dn, user.email)
                continue
            unique[user.email] = user
        return list(unique.values())

    # -- publishing -----------------------------------------------------------------------

    def publish_certificate(
        self,
        address: str,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        attributes: Sequence[str] | None = None,
    ) -> str:
        """Add certificate to the entry of the user with address; return the entry's DN.

        attributes: default ``[ldap] publish_certificates``. ``userSMIMECertificate;binary``
        gets a PKCS#7 certs-only SignedData of the certificate and chain (RFC 8551 section
        3.6), ``userCertificate;binary`` the DER certificate. Values already there are kept, so
        publishing twice changes nothing. Raises DirectoryUnavailable, DirectoryError (no
        entry for the address, or the server refused the change).
        """
        targets = tuple(self.config.publish_certificates if attributes is None else attributes)
        if not targets:
            raise DirectoryError("ldap: no [ldap] publish_certificates attribute is configured")
        user = self.fetch(address)
        if user is None:
            raise DirectoryError(f"ldap: no directory entry for {_norm_address(address)}")
        entry = self._conn.search(user.dn, "(objectClass=*)", self._write_forms(targets),
                                  scope=ldap3.BASE)
        present = entry[0] if entry else Entry(user.dn, {})
        changes: dict[str, list[tuple[str, list[bytes]]]] = {}
        for target in targets:
            if strip_binary(target).lower() == strip_binary(SMIME_CERTIFICATE).lower():
                value = pkcs7.serialize_certificates([certificate, *chain], Encoding.DER)
                have = present.values(target)
                # Several PKCS#7 blobs may hold the same certificate: compare certificates.
                if any(certificate in parse_certificates(v, user.dn) for v in have):
                    continue
                # OpenLDAP refuses ";binary" on Binary syntax (RFC 4522 section 2 reserves
                # it for syntaxes that need it); the value is the same either way.
                changes[strip_binary(target)] = [(ldap3.MODIFY_ADD, [value])]
            else:
                der = certificate.public_bytes(Encoding.DER)
                if der in present.values(target):
                    continue
                changes[target] = [(ldap3.MODIFY_ADD, [der])]
        if changes:
            self._conn.modify(user.dn, changes)
        for addr in user.addresses:
            self._cache.invalidate(addr)
        return user.dn

    @staticmethod
    def _write_forms(targets: Iterable[str]) -> list[str]:
        out: list[str] = []
        for t in targets:
            out += [strip_binary(t), f"{strip_binary(t)};binary"]
        return out

    def close(self) -> None:
        """Unbind the connection."""
        self._conn.close()

    # -- reading one entry ------------------------------------------------------------------

    def _user(self, entry: Entry, fallback_email: str) -> DirectoryUser:
        mails = [m.strip().lower() for a in self._mail for m in entry.texts(a) if m.strip()]
        alternates = [
            m.strip().lower() for a in self._alternate for m in entry.texts(a) if m.strip()
        ]
        addresses = tuple(dict.fromkeys([*mails, *alternates]))
        email = mails[0] if mails else fallback_email
        groups, group_values = self._group_values(entry)
        values = dict(group_values)
        values.update(self._own_values(entry))
        certs: list[x509.Certificate] = []
        for description in self._cert_attrs:
            for raw in entry.values(description):
                for cert in parse_certificates(raw, f"{entry.dn} {description}"):
                    if cert not in certs:
                        certs.append(cert)
        return DirectoryUser(
            dn=entry.dn,
            email=email,
            addresses=addresses or ((email,) if email else ()),
            properties=MappingProxyType(values),
            certificates=tuple(certs),
            groups=groups,
        )

    def _own_values(self, entry: Entry) -> dict[str, str]:
        values: dict[str, str] = {}
        for name, descriptions in self._properties.items():
            for description in descriptions:
                texts = entry.texts(description)
                if not texts:
                    continue
                if len(texts) > 1:
                    log.warning("ldap: %s: %s has %d values; using the first",
                                entry.dn, description, len(texts))
                try:
                    values[name] = validate(name, texts[0], "user")
                except PolicyError as exc:
                    log.warning("ldap: %s: %s ignored: %s", entry.dn, description, exc)
                    continue
                break  # the first attribute of the list that has a good value wins
        return values

    def _group_values(self, entry: Entry) -> tuple[tuple[str, ...], dict[str, str]]:
        if not self.config.groups:
            return (), {}
        user_dn = normalise_dn(entry.dn)
        member_of = {normalise_dn(v) for v in entry.texts("memberOf")}
        matched: list[str] = []
        values: dict[str, str] = {}
        for index, rule in enumerate(self.config.groups):
            if rule.member_attribute.lower() == MEMBER_OF:
                is_member = normalise_dn(rule.dn) in member_of
            else:
                is_member = user_dn in self._members(index, rule)
            if not is_member:
                continue
            matched.append(rule.dn)
            for name, raw in rule.properties.items():
                if name in values:
                    continue  # an earlier rule set it: the first matching rule wins
                try:
                    values[name] = validate(name, raw, "user")
                except PolicyError as exc:
                    log.warning("ldap: [[ldap.groups]] %s: %s ignored: %s", rule.dn, name, exc)
        return tuple(matched), values

    def _members(self, index: int, rule: LdapGroup) -> frozenset[str]:
        """Normalised member DNs of a group entry, cached for cache_ttl. A missing group has
        no members (logged). Raises DirectoryUnavailable."""
        key = str(index)
        hit, members = self._groups.get(key)
        if hit and members is not None:
            return members
        found = self._conn.search(rule.dn, "(objectClass=*)", [rule.member_attribute],
                                  scope=ldap3.BASE)
        if not found:
            log.warning("ldap: group %s does not exist; its rule matches nobody", rule.dn)
            result: frozenset[str] = frozenset()
        else:
            # uniqueMember values may end in "#'0101'B" (an optional UID, RFC 4519 2.40).
            result = frozenset(
                normalise_dn(v.split("#", 1)[0]) for v in found[0].texts(rule.member_attribute)
            )
        self._groups.put(key, result)
        return result

