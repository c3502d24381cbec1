"""LDAP test fixtures: a subtree of the session slapd per test, a config that points at it.

Each test gets ``ou=tN,ou=people,dc=example,dc=com`` of its own (users and groups go there), so
tests share one slapd without seeing each other's entries.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from smimegate.config import Config, loads
from tests.fixtures.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
)
from tests.helpers.testpki import TestCA

_counter = itertools.count()

# Every policy attribute of contrib/ldap/smimegate.ldif, mapped to its property.
POLICY_ATTRIBUTES = {
    "locality": "smimegateLocality",
    "encrypt_mode": "smimegateEncryptMode",
    "smime": "smimegateSmime",
    "sign": "smimegateSign",
    "sign_mode": "smimegateSignMode",
    "subject_trigger": "smimegateSubjectTrigger",
    "subject_trigger_enabled": "smimegateSubjectTriggerEnabled",
    "encryption_algorithm": "smimegateEncryptionAlgorithm",
    "key_transport": "smimegateKeyTransport",
}


@dataclass
class Tree:
    """One test's subtree and an admin connection to fill it."""

    slapd: Slapd
    base: str
    admin: ldap3.Connection
    folder: Path

    def add_user(
        self,
        uid: str,
        mail: str | None,
        *,
        alternates: tuple[str, ...] = (),
        extra: dict[str, Any] | None = None,
    ) -> str:
        dn = f"uid={uid},{self.base}"
        attrs: dict[str, Any] = {"cn": uid, "sn": uid, "uid": uid}
        classes = ["inetOrgPerson", "smimegateUser"]
        if mail:
            attrs["mail"] = mail
        if alternates:
            attrs["mailAlternateAddress"] = list(alternates)
            classes.append("smimegateMailRecipient")
        attrs.update(extra or {})
        ok = self.admin.add(dn, classes, attrs)
        assert ok, self.admin.result
        return dn

    def add_group(self, cn: str, members: list[str], attribute: str = "member") -> str:
        dn = f"cn={cn},{self.base}"
        klass = "groupOfNames" if attribute == "member" else "groupOfUniqueNames"
        ok = self.admin.add(dn, [klass], {"cn": cn, attribute: members})
        assert ok, self.admin.result
        return dn

    def modify(self, dn: str, changes: dict[str, Any]) -> None:
        ok = self.admin.modify(dn, changes)
        assert ok, self.admin.result

    def delete(self, dn: str) -> None:
        ok = self.admin.delete(dn)
        assert ok, self.admin.result

    def read(self, dn: str, attributes: list[str]) -> dict[str, list[bytes]]:
        ok = self.admin.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes)
        assert ok, self.admin.result
        return dict(self.admin.response[0]["raw_attributes"])

    def config(self, extra: str = "", *, urls: list[str] | None = None, groups: str = "") -> Config:
        """A Config whose [ldap] section points at this subtree; extra lines go into [ldap]."""
        return loads(self.config_text(extra, urls=urls, groups=groups), "test.toml")

    def write_config(self, extra: str = "", *, groups: str = "", unmapped: str = "") -> Path:
        """The same configuration as a file, for the command line; properties named in
        unmapped (space-separated) are left out of [ldap.attributes]."""
        path = self.folder / "smimegate.toml"
        path.write_text(self.config_text(extra, groups=groups, unmapped=unmapped))
        return path

    def config_text(
        self,
        extra: str = "",
        *,
        urls: list[str] | None = None,
        groups: str = "",
        unmapped: str = "",
    ) -> str:
        secret = self.folder / "ldap.secret"
        secret.write_text(SERVICE_PASSWORD + "\n")
        os.chmod(secret, 0o600)
        mapped = "\n".join(
            f'{k} = "{v}"' for k, v in POLICY_ATTRIBUTES.items() if k not in unmapped.split()
        )
        url_list = ", ".join(f'"{u}"' for u in (urls or [self.slapd.url]))
        text = f"""
[store]
url = "sqlite:///{self.folder / 'store.db'}"
master_key_file = "{self.folder / 'master.key'}"

[ldap]
urls = [{url_list}]
bind_dn = "{SERVICE_DN}"
password_file = "{secret}"
base_dn = "{self.base}"
timeout = 3
{extra}

[ldap.attributes]
{mapped}
phone = "mobile"

{groups}
"""
        return text


@pytest.fixture
def tree(slapd: Slapd, tmp_path: Path) -> Iterator[Tree]:
    yield from _tree(slapd, tmp_path)


@pytest.fixture
def private_tree(private_slapd: Slapd, tmp_path: Path) -> Iterator[Tree]:
    yield from _tree(private_slapd, tmp_path)


def _tree(server: Slapd, folder: Path) -> Iterator[Tree]:
    admin = ldap3.Connection(
        ldap3.Server(server.url, get_info=ldap3.NONE), ADMIN_DN, ADMIN_PASSWORD, auto_bind=True
    )
    base = f"ou=t{os.getpid()}x{next(_counter)},{PEOPLE}"
    assert admin.add(base, ["organizationalUnit"]), admin.result
    try:
        yield Tree(server, base, admin, folder)  # the subtree goes with the slapd's temp dir
    finally:
        admin.unbind()


@pytest.fixture(scope="session")
def ca() -> TestCA:
    return TestCA("smimegate LDAP test CA")


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def p7(*certs: x509.Certificate) -> bytes:
    return pkcs7.serialize_certificates(list(certs), Encoding.DER)


ConfigFactory = Callable[..., Config]
