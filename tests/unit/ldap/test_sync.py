"""``smimegate ldap sync`` and certificate publishing against the private slapd, through the
command line (in process) and an SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from smimegate.cli.main import main
from smimegate.config import load
from smimegate.service import certificates
from smimegate.service.actor import Actor
from smimegate.store import SqlStore
from smimegate.store.ldap import DirectoryUsers
from tests.helpers.testpki import TestCA
from tests.unit.ldap.conftest import Tree, der, p7


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _sync(capsys: pytest.CaptureFixture[str], cfg: Path, *flags: str) -> dict[str, Any]:
    code, out, err = _run(capsys, "-c", str(cfg), "ldap", "sync", "--json", *flags)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def _store(tree: Tree) -> SqlStore:
    return SqlStore.open(f"sqlite:///{tree.folder / 'store.db'}", None)


def test_sync_all_modes(tree: Tree, ca: TestCA, capsys: pytest.CaptureFixture[str]) -> None:
    cert = ca.issue("anna@example.com")
    anna = tree.add_user("anna", "anna@example.com",
                         extra={"smimegateEncryptMode": "mandatory", "mobile": "+4930123456",
                                "userSMIMECertificate": p7(cert.cert)})
    ben = tree.add_user("ben", "ben@example.com", alternates=("b@example.com",))
    group = tree.add_group("signers", [ben])
    tree.add_user("nomail", None)
    cfg = tree.write_config(groups=f"""
[[ldap.groups]]
dn = "{group}"
properties = {{ sign_mode = "opaque" }}
""", unmapped="sign")
    assert _run(capsys, "-c", str(cfg), "db", "init")[0] == 0
    store = _store(tree)
    store.add_user("partner@other.test", {"phone": "+4930999999"})  # not the directory's domain
    store.add_user("old@example.com")
    store.add_user("b@example.com")  # ben's alternate address: not gone
    store.add_user("ben@example.com", {"sign": "no", "sign_mode": "clear"})

    # --dry-run: reports, writes nothing.
    dry = _sync(capsys, cfg, "--dry-run")
    assert dry["dry_run"] is True and dry["added"] == 1 and dry["changed"] == 1
    assert dry["disabled"] == 1 and dry["certificates_imported"] == 1
    assert [u.email for u in store.list_users()] == [
        "b@example.com", "ben@example.com", "old@example.com", "partner@other.test"]
    assert store.list_certificates() == []

    first = _sync(capsys, cfg)
    assert (first["added"], first["changed"], first["disabled"], first["removed"]) == (1, 1, 1, 0)
    assert first["unchanged"] == 0 and first["certificates_imported"] == 1
    assert store.get_user("anna@example.com").properties == {
        "encrypt_mode": "mandatory", "phone": "+4930123456"}
    # Managed (sign_mode from the group) is set; unmanaged (sign) is left as the admin set it.
    assert store.get_user("ben@example.com").properties == {"sign": "no", "sign_mode": "opaque"}
    assert store.get_user("old@example.com").enabled is False
    assert store.get_user("partner@other.test").enabled is True
    assert store.get_user("b@example.com").enabled is True
    (record,) = store.find_certificates("anna@example.com")
    assert record.der == der(cert.cert) and not record.has_key and record.source == "ldap"

    # Idempotent.
    second = _sync(capsys, cfg)
    assert second["changes"] == [] and second["unchanged"] == 2
    assert second["certificates_imported"] == 0

    # Change in the directory: a value changes, one goes, a user leaves, one comes back.
    tree.modify(anna, {"smimegateEncryptMode": [("MODIFY_REPLACE", ["none"])],
                       "mobile": [("MODIFY_DELETE", [])]})
    tree.modify(group, {"member": [("MODIFY_REPLACE", [anna])]})
    tree.add_user("old", "old@example.com")
    third = _sync(capsys, cfg)
    changes = {c["email"]: c for c in third["changes"]}
    assert changes["anna@example.com"]["details"] == [
        "encrypt_mode: mandatory -> none", "phone: +4930123456 -> (inherited)",
        "sign_mode: (inherited) -> opaque"]
    assert changes["ben@example.com"]["details"] == ["sign_mode: opaque -> (inherited)"]
    assert changes["old@example.com"]["details"] == ["enabled"]
    assert store.get_user("old@example.com").enabled is True
    assert store.get_user("anna@example.com").properties == {
        "encrypt_mode": "none", "sign_mode": "opaque"}

    # --remove: gone users are removed instead of disabled.
    tree.delete(f"uid=old,{tree.base}")
    code, out, err = _run(capsys, "-c", str(cfg), "ldap", "sync", "--remove")
    assert code == 0, err
    assert "remove old@example.com (gone from the directory)" in out
    assert "removed 1" in out.splitlines()[-1]
    assert [u.email for u in store.list_users()] == [
        "anna@example.com", "b@example.com", "ben@example.com", "partner@other.test"]
    store.close()


def test_sync_directory_down_changes_nothing(
    private_tree: Tree, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = private_tree
    cfg = tree.write_config()
    assert _run(capsys, "-c", str(cfg), "db", "init")[0] == 0
    store = _store(tree)
    store.add_user("someone@example.com")
    tree.slapd.stop()
    code, out, err = _run(capsys, "-c", str(cfg), "ldap", "sync")
    assert code == 1 and "ldap" in err and out == ""
    assert store.get_user("someone@example.com").enabled is True
    store.close()


def test_sync_without_ldap_section_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "s.db"}"\n')
    assert _run(capsys, "-c", str(cfg), "db", "init")[0] == 0
    code, _, err = _run(capsys, "-c", str(cfg), "ldap", "sync")
    assert code == 2 and "[ldap]" in err


def test_lookup_command(tree: Tree, capsys: pytest.CaptureFixture[str]) -> None:
    tree.add_user("carl", "carl@example.com", extra={"smimegateSmime": "deny"})
    cfg = tree.write_config()
    code, out, err = _run(capsys, "-c", str(cfg), "ldap", "lookup", "carl@example.com", "--json")
    assert code == 0, err
    assert json.loads(out)["properties"] == {"smime": "deny"}
    code, _, err = _run(capsys, "-c", str(cfg), "ldap", "lookup", "nobody@example.com")
    assert code == 1 and "no directory entry" in err


def test_publish_then_read_back(tree: Tree, ca: TestCA) -> None:
    dn = tree.add_user("dora", "dora@example.com")
    cfg = tree.config(
        'publish_certificates = ["userSMIMECertificate;binary", "userCertificate;binary"]'
    ).ldap
    users = DirectoryUsers(cfg)
    assert users.lookup("dora@example.com").certificates == ()  # type: ignore[union-attr]
    cert = ca.issue("dora@example.com").cert
    assert users.publish_certificate("dora@example.com", cert, [ca.cert]).lower() == dn.lower()
    raw = tree.read(dn, ["userSMIMECertificate", "userCertificate;binary"])
    # certificates is a SET OF in SignedData (RFC 5652 5.1): DER sorts it, so compare sets.
    assert set(pkcs7.load_der_pkcs7_certificates(raw["userSMIMECertificate"][0])) == {
        cert, ca.cert}
    assert raw["userCertificate;binary"] == [der(cert)]
    # Publishing again adds nothing; the cache was dropped, so the lookup sees the new values.
    users.publish_certificate("dora@example.com", cert, [ca.cert])
    raw = tree.read(dn, ["userSMIMECertificate", "userCertificate;binary"])
    assert len(raw["userSMIMECertificate"]) == 1 and len(raw["userCertificate;binary"]) == 1
    dora = users.lookup("dora@example.com")
    assert dora is not None and set(dora.certificates) == {cert, ca.cert}
    users.close()


def test_cert_issue_publishes(tree: Tree, capsys: pytest.CaptureFixture[str]) -> None:
    dn = tree.add_user("emil", "emil@example.com")
    cfg = tree.write_config('publish_certificates = ["userCertificate;binary"]')
    assert _run(capsys, "-c", str(cfg), "db", "init")[0] == 0
    code, _, err = _run(capsys, "-c", str(cfg), "ca", "create", "--root-cn", "Root",
                        "--intermediate-cn", "Issuing", "--key-type", "ec-p256")
    assert code == 0, err
    code, out, err = _run(capsys, "-c", str(cfg), "cert", "issue", "emil@example.com",
                          "--key-type", "ec-p256")
    assert code == 0, err
    assert f"published to {dn}".lower() in out.lower()
    (value,) = tree.read(dn, ["userCertificate;binary"])["userCertificate;binary"]
    assert x509.load_der_x509_certificate(value).subject.rfc4514_string().find("emil") >= 0
    # An address the directory does not know: issued and stored, exit 1 naming the problem.
    code, out, err = _run(capsys, "-c", str(cfg), "cert", "issue", "ghost@example.com",
                          "--key-type", "ec-p256")
    assert code == 1 and "no directory entry" in err and "issued" in out


def test_issue_publishes_in_the_service(tree: Tree, capsys: pytest.CaptureFixture[str]) -> None:
    """The web and the API issue through the service as the CLI does, so they publish too; a
    directory that refuses leaves the certificate issued and says why in the result."""
    dn = tree.add_user("fritz", "fritz@example.com")
    path = tree.write_config('publish_certificates = ["userCertificate;binary"]')
    assert _run(capsys, "-c", str(path), "db", "init")[0] == 0
    assert _run(capsys, "-c", str(path), "ca", "create", "--root-cn", "Root",
                "--intermediate-cn", "Issuing", "--key-type", "ec-p256")[0] == 0
    config = load(path)
    store = SqlStore.open(config.store.url, config.store.master_key_file)
    actor = Actor("alice", "admin", "api", "127.0.0.1")
    try:
        done = certificates.issue(store, config, actor,
                                  certificates.IssueOptions("fritz@example.com",
                                                            key_type="ec-p256"))
        assert done.published is not None and done.published.error is None
        assert str(done.published.dn).lower() == dn.lower()
        (value,) = tree.read(dn, ["userCertificate;binary"])["userCertificate;binary"]
        assert x509.load_der_x509_certificate(value) == done.issued.cert
        ghost = certificates.issue(store, config, actor,
                                   certificates.IssueOptions("ghost@example.com",
                                                             key_type="ec-p256"))
        assert ghost.published is not None and "no directory entry" in str(ghost.published.error)
        assert store.get_certificate(ghost.issued.record.fingerprint).emails == (
            "ghost@example.com",)
    finally:
        store.close()
