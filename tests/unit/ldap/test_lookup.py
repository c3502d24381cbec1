"""Live lookups against the private slapd: addresses, policy attributes, groups, certificates,
the cache, TLS, and what happens when the directory goes away."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.policy import resolve
from smimegate.store.ldap import DirectoryUsers, normalise_dn, parse_certificates
from smimegate.store.ldapconn import (
    DirectoryConnection,
    DirectoryError,
    DirectoryUnavailable,
    escape_filter_value,
    user_filter,
)
from tests.helpers.testpki import TestCA
from tests.helpers.x509damage import cert_with_version
from tests.unit.ldap.conftest import Tree, der, p7


def test_escape_filter_value_rfc4515() -> None:
    assert escape_filter_value(r"a*b(c)d\e" + "\x00") == r"a\2ab\28c\29d\5ce\00"
    text = user_filter("(|(mail={email})(mailAlternateAddress={email}))", "*)(uid=*")
    assert text == r"(|(mail=\2a\29\28uid=\2a)(mailAlternateAddress=\2a\29\28uid=\2a))"


def test_normalise_dn() -> None:
    assert normalise_dn("UID=Alice, ou=People,DC=Example,dc=com") == normalise_dn(
        "uid=alice,ou=people,dc=example,dc=com"
    )
    assert normalise_dn(r"cn=a\, b,dc=x") == r"cn=a\, b,dc=x"


def test_lookup_by_mail_and_alternate(tree: Tree) -> None:
    dn = tree.add_user("alice", "Alice@Example.com", alternates=("a.smith@example.com",))
    users = DirectoryUsers(tree.config().ldap)
    found = users.lookup("alice@example.com")
    assert found is not None and found.dn.lower() == dn.lower()
    assert found.email == "alice@example.com"
    assert found.addresses == ("alice@example.com", "a.smith@example.com")
    alt = users.lookup("<A.Smith@example.com>")
    assert alt is not None and alt.email == "alice@example.com"
    assert users.lookup("nobody@example.com") is None
    # A filter metacharacter in the address must not widen the search.
    assert users.lookup("*@example.com") is None
    users.close()


def test_policy_attributes_validated_and_bad_ones_ignored(
    tree: Tree, caplog: pytest.LogCaptureFixture
) -> None:
    tree.add_user(
        "bob",
        "bob@example.com",
        extra={
            "smimegateEncryptMode": "MANDATORY",
            "smimegateSign": "true",
            "smimegateSignMode": "sideways",  # bad: logged and ignored
            "smimegateKeyTransport": "rsa-oaep",
            "mobile": "+31 20 123 4567",
        },
    )
    users = DirectoryUsers(tree.config().ldap)
    with caplog.at_level(logging.WARNING, logger="smimegate.ldap"):
        user = users.lookup("bob@example.com")
    assert user is not None
    assert dict(user.properties) == {
        "encrypt_mode": "mandatory",
        "sign": "yes",
        "key_transport": "rsa-oaep",
        "phone": "+31201234567",
    }
    assert "smimegateSignMode" in caplog.text and "sideways" in caplog.text
    # The directory level overrides the store's user row (resolve's "ldap" level).
    policy = resolve({"sign": "no"}, None, {"encrypt_mode": "none", "sign_mode": "opaque"},
                     user.properties)
    assert policy["encrypt_mode"].value == "mandatory" and policy.source("encrypt_mode") == "ldap"
    assert policy.source("sign") == "ldap"
    assert policy["sign_mode"].value == "opaque" and policy.source("sign_mode") == "user"
    users.close()


def test_group_rules_member_unique_member_and_order(tree: Tree) -> None:
    carol = tree.add_user("carol", "carol@example.com", extra={"smimegateSign": "yes"})
    dave = tree.add_user("dave", "dave@example.com")
    tree.add_user("erin", "erin@example.com")
    # member values as another client might spell them: other case, spaces after commas.
    g1 = tree.add_group("encrypt", [carol.upper().replace(",", ", "), dave])
    g2 = tree.add_group("nosign", [carol, dave], attribute="uniqueMember")
    groups = f"""
[[ldap.groups]]
dn = "{g1}"
properties = {{ encrypt_mode = "mandatory" }}

[[ldap.groups]]
dn = "{g2}"
member_attribute = "uniqueMember"
properties = {{ encrypt_mode = "none", sign = "no", sign_mode = "bogus" }}
"""
    users = DirectoryUsers(tree.config(groups=groups).ldap)
    c = users.lookup("carol@example.com")
    d = users.lookup("dave@example.com")
    e = users.lookup("erin@example.com")
    assert c is not None and d is not None and e is not None
    assert c.groups == (g1, g2)
    # First matching rule wins between groups; the user's own attribute beats the groups.
    assert dict(c.properties) == {"encrypt_mode": "mandatory", "sign": "yes"}
    assert dict(d.properties) == {"encrypt_mode": "mandatory", "sign": "no"}
    assert dict(e.properties) == {} and e.groups == ()
    users.close()


def test_group_rule_member_of(tree: Tree) -> None:
    # The fixture's slapd runs the memberof overlay: group members get memberOf on their entry.
    frank = tree.add_user("frank", "frank@example.com")
    tree.add_user("gus", "gus@example.com")
    group = tree.add_group("partners", [frank])
    assert tree.read(frank, ["memberOf"])["memberOf"] == [group.encode()]
    cfg = tree.config(groups=f"""
[[ldap.groups]]
dn = "{group.upper()}"
member_attribute = "memberOf"
properties = {{ locality = "internal" }}
""")
    users = DirectoryUsers(cfg.ldap)
    f = users.lookup("frank@example.com")
    g = users.lookup("gus@example.com")
    assert f is not None and f.groups == (group.upper(),)
    assert dict(f.properties) == {"locality": "internal"}
    assert g is not None and g.groups == () and dict(g.properties) == {}
    users.close()


def test_certificates_from_either_attribute(tree: Tree, ca: TestCA) -> None:
    one = ca.issue("gina@example.com")
    two = ca.issue("gina@example.com", "ec-p256")
    three = ca.issue("hank@example.com")
    tree.add_user(
        "gina",
        "gina@example.com",
        extra={"userSMIMECertificate": [p7(one.cert, ca.cert)], "userCertificate;binary": der(two.cert)},
    )
    tree.add_user("hank", "hank@example.com", extra={"userSMIMECertificate": der(three.cert)})
    tree.add_user("ivy", "ivy@example.com", extra={"userSMIMECertificate": b"not a certificate"})
    users = DirectoryUsers(tree.config().ldap)
    gina = users.lookup("gina@example.com")
    assert gina is not None
    assert set(gina.certificates) == {one.cert, ca.cert, two.cert}
    hank = users.lookup("hank@example.com")
    assert hank is not None and hank.certificates == (three.cert,)
    ivy = users.lookup("ivy@example.com")
    assert ivy is not None and ivy.certificates == ()
    users.close()


def test_attribute_map_with_and_without_binary(tree: Tree, ca: TestCA) -> None:
    cert = ca.issue("jack@example.com")
    tree.add_user("jack", "jack@example.com", extra={"userCertificate;binary": der(cert.cert)})
    cfg = tree.config().ldap
    import dataclasses
    from types import MappingProxyType

    for names in (("userCertificate",), ("usercertificate;BINARY",)):
        attrs = dict(cfg.attributes)
        attrs["certificates"] = names
        users = DirectoryUsers(dataclasses.replace(cfg, attributes=MappingProxyType(attrs)))
        jack = users.lookup("jack@example.com")
        assert jack is not None and jack.certificates == (cert.cert,), names
        users.close()


def test_parse_certificates_pem_and_garbage(ca: TestCA) -> None:
    cert = ca.issue("k@example.com")
    assert parse_certificates(cert.cert_pem()) == [cert.cert]
    assert parse_certificates(b"\x30\x03\x02\x01\x00") == []
    # A version other than v1-v3: cryptography's InvalidVersion is no ValueError.
    der = cert.cert.public_bytes(Encoding.DER)
    bad = cert_with_version(der, 0x11)
    assert bad != der and parse_certificates(bad) == []


def test_positive_and_negative_cache(tree: Tree) -> None:
    dn = tree.add_user("lena", "lena@example.com", extra={"smimegateSign": "no"})
    cfg = tree.config("cache_ttl = 1\nnegative_cache_ttl = 1").ldap
    users = DirectoryUsers(cfg)
    assert users.lookup("lena@example.com") is not None
    assert users.lookup("mia@example.com") is None
    tree.modify(dn, {"smimegateSign": [("MODIFY_REPLACE", ["yes"])]})
    tree.add_user("mia", "mia@example.com")
    lena = users.lookup("lena@example.com")
    assert lena is not None and lena.properties["sign"] == "no"  # cached
    assert users.lookup("mia@example.com") is None  # negative answer cached
    deadline = time.monotonic() + 10
    while users.lookup("mia@example.com") is None:  # both answers age out after their TTL
        assert time.monotonic() < deadline, "negative cache entry never expired"
        time.sleep(0.05)
    lena = users.lookup("lena@example.com")
    assert lena is not None and lena.properties["sign"] == "yes"
    users.close()


def test_many_threads_share_one_connection(tree: Tree) -> None:
    for i in range(5):
        tree.add_user(f"t{i}", f"t{i}@example.com", extra={"smimegateSign": "no"})
    users = DirectoryUsers(tree.config("cache_ttl = 0\nnegative_cache_ttl = 0").ldap)
    errors: list[BaseException] = []
    results: list[str] = []

    def work(n: int) -> None:
        try:
            for k in range(10):
                u = users.lookup(f"t{(n + k) % 5}@example.com")
                assert u is not None and u.email == f"t{(n + k) % 5}@example.com"
                results.append(u.email)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(results) == 80
    users.close()


def test_start_tls_and_ldaps_with_ca_file(tree: Tree) -> None:
    tree.add_user("nina", "nina@example.com")
    ca_file = tree.slapd.ca_file
    for extra, urls in (
        (f'start_tls = true\nca_file = "{ca_file}"', [tree.slapd.url]),
        (f'ca_file = "{ca_file}"', [tree.slapd.ldaps_url]),
    ):
        users = DirectoryUsers(tree.config(extra, urls=urls).ldap)
        nina = users.lookup("nina@example.com")
        assert nina is not None and nina.email == "nina@example.com"
        conn = users._conn._conn  # the live ldap3 connection
        assert conn is not None
        assert conn.tls_started if not urls[0].startswith("ldaps") else conn.server.ssl
        users.close()


def test_start_tls_refuses_an_untrusted_server(tree: Tree, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other-ca.pem"
    other.write_bytes(TestCA("unrelated").cert_pem())
    users = DirectoryUsers(
        tree.config(f'start_tls = true\nca_file = "{other}"\non_unavailable = "tempfail"').ldap
    )
    with pytest.raises(DirectoryUnavailable, match="(?i)tls|certificate"):
        users.lookup("nina@example.com")


def test_missing_password_file(tree: Tree) -> None:
    cfg = tree.config().ldap
    import dataclasses

    with pytest.raises(DirectoryError, match="password_file"):
        DirectoryConnection(dataclasses.replace(cfg, password_file="/nonexistent/ldap.secret"))


def test_wrong_password_is_unavailable(tree: Tree) -> None:
    cfg = tree.config().ldap
    users = DirectoryUsers(cfg, connection=DirectoryConnection(cfg, password="wrong"))
    with pytest.raises(DirectoryUnavailable):
        users.lookup("x@example.com")


def test_restart_in_the_middle_and_down(
    private_tree: Tree, caplog: pytest.LogCaptureFixture
) -> None:
    tree = private_tree
    tree.add_user("olga", "olga@example.com")
    cfg = tree.config("cache_ttl = 0\nnegative_cache_ttl = 0").ldap
    users = DirectoryUsers(cfg)
    assert users.lookup("olga@example.com") is not None
    tree.slapd.stop()
    tree.slapd.start()
    # The same DirectoryUsers, no reopen of ours: SAFE_RESTARTABLE reconnects and re-binds.
    assert users.lookup("olga@example.com") is not None
    tree.slapd.stop()
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable):
        users.lookup("olga@example.com")
    assert time.monotonic() - started < 10  # the milter must answer 451 promptly
    soft = DirectoryUsers(tree.config('on_unavailable = "soft"').ldap)
    with caplog.at_level(logging.WARNING, logger="smimegate.ldap"):
        assert soft.lookup("olga@example.com") is None
    assert "unavailable" in caplog.text
    tree.slapd.start()
    assert users.lookup("olga@example.com") is not None
    assert soft.lookup("olga@example.com") is not None  # soft failures are not cached
    users.close()
    soft.close()


def test_second_url_used_when_first_is_down(tree: Tree) -> None:
    from tests.helpers.ports import free_port

    tree.add_user("pia", "pia@example.com")
    dead = f"ldap://127.0.0.1:{free_port()}"
    users = DirectoryUsers(tree.config(urls=[dead, tree.slapd.url]).ldap)
    assert users.lookup("pia@example.com") is not None
    users.close()


def test_contrib_example_entries_load_and_read(private_slapd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """contrib/ldap/example.ldif loads with the shipped schema and reads as its comments say
    (a slapd of its own: the README's base DN would also see other tests' entries)."""
    slapd = private_slapd
    import subprocess

    from smimegate.config import loads
    from tests.fixtures.slapd import ADMIN_DN, ADMIN_PASSWORD, ROOT, SERVICE_PASSWORD

    example = ROOT / "contrib" / "ldap" / "example.ldif"
    proc = subprocess.run(
        ["ldapadd", "-x", "-H", slapd.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-f",
         str(example)],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    secret = tmp_path / "secret"
    secret.write_text(SERVICE_PASSWORD)
    readme = (ROOT / "contrib" / "ldap" / "README.md").read_text()
    sample = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    sample = sample.replace('"/etc/smimegate/ldap.secret"', f'"{secret}"')
    sample = sample.replace('["ldap://ldap1.example.com", "ldap://ldap2.example.com"]',
                            f'["{slapd.url}"]')
    sample = sample.replace('"/etc/ssl/certs/example-ca.pem"', f'"{slapd.ca_file}"')
    users = DirectoryUsers(loads(sample, "README.md").ldap)
    alice = users.lookup("a.smith@example.com")
    assert alice is not None and alice.email == "alice@example.com"
    assert dict(alice.properties) == {
        "phone": "+31201234567", "locality": "internal", "encrypt_mode": "mandatory"}
    bob = users.lookup("bob@example.com")
    assert bob is not None and dict(bob.properties) == {
        "locality": "internal", "sign_mode": "opaque", "encryption_algorithm": "aes256-gcm",
        "sign": "no"}
    users.close()


def test_unavailable_is_a_store_unavailable() -> None:
    """The milter maps StoreUnavailable to 451 4.7.1; the directory rides on that."""
    from smimegate.store.base import StoreUnavailable

    assert issubclass(DirectoryUnavailable, StoreUnavailable)
    assert issubclass(DirectoryUnavailable, DirectoryError)
