"""``cert import | list | show | export`` and ``root add | list | remove`` on both backends,
with third-party files: RFC 9216 and Thunderbird PKCS#12, PEM and DER certificates, a PKCS#7
bundle."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.unit.cli.admin_support import PYCA, R9216, TB, Cli, cli  # noqa: F401

CONTRACT_FIELDS = {"fingerprint", "emails", "subject", "issuer", "serial", "not_before",
                   "not_after", "has_key", "trusted"}


def _fp(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.mark.parametrize("name", ["alice", "bob", "carlos", "dana"])
def test_import_rfc9216_pkcs12_stores_both_keys_and_the_chain(cli: Cli, name: str) -> None:  # noqa: F811
    result = cli.ok("cert", "import", R9216 / f"{name}.p12", "--password", name)
    assert "3 new, 0 already stored, 2 private key(s) stored" in result.out
    sign, enc = _fp(R9216 / f"{name}.sign.crt"), _fp(R9216 / f"{name}.encrypt.crt")
    listed = {c["fingerprint"]: c for c in cli.ok("cert", "list", "--json").json()}
    assert len(listed) == 3
    assert listed[sign]["has_key"] and listed[enc]["has_key"]
    assert listed[sign]["emails"] == [f"{name}@smime.example"]
    store = cli.store()
    try:
        for fp in (sign, enc):
            key = store.get_private_key(fp)
            cert = store.get_certificate(fp).certificate()
            assert key.public_key() == cert.public_key()
    finally:
        store.close()
    # Twice: not an error, stored once.
    again = cli.ok("cert", "import", R9216 / f"{name}.p12", "--password", name)
    assert "0 new, 3 already stored, 0 private key(s) stored" in again.out
    assert len(cli.ok("cert", "list", "--json").json()) == 3


@pytest.mark.parametrize("name", ["Alice", "Alice-ec", "Bob"])
def test_import_thunderbird_pkcs12(cli: Cli, name: str) -> None:  # noqa: F811
    result = cli.ok("cert", "import", TB / f"{name}.p12", "--password", "nss")
    assert "2 new, 0 already stored, 1 private key(s) stored" in result.out
    listed = cli.ok("cert", "list", "--email", f"{name.lower()}@example.com", "--json").json()
    assert len(listed) == 1 and listed[0]["has_key"] is True
    assert "NSS Test CA" in listed[0]["issuer"]


def test_keys_are_not_in_the_database_in_clear(cli: Cli) -> None:  # noqa: F811
    cli.ok("cert", "import", TB / "Bob.p12", "--password", "nss")
    store = cli.store()
    try:
        fp = store.list_certificates("bob@example.com")[0].fingerprint
        key = store.get_private_key(fp)
    finally:
        store.close()
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    secret = key.private_numbers().d.to_bytes(256, "big").lstrip(b"\0")
    if cli.url.startswith("sqlite"):
        raw = b"".join(p.read_bytes() for p in (cli.tmp / "var").iterdir())
        assert pkcs8 not in raw and secret not in raw
    else:
        import psycopg
        with psycopg.connect(cli.url) as conn:
            rows = conn.execute("SELECT wrapped FROM private_keys").fetchall()
        assert rows and all(pkcs8 not in bytes(r[0]) and secret not in bytes(r[0]) for r in rows)


def test_pem_der_and_pkcs7_bundle(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    pem = R9216 / "alice.sign.crt"
    der = tmp_path / "alice.der"
    der.write_bytes(x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(
        serialization.Encoding.DER))
    assert "1 new" in cli.ok("cert", "import", pem).out
    assert "0 new, 1 already stored" in cli.ok("cert", "import", der).out
    # PEM certificate followed by its unencrypted key: the key is stored with it.
    both = tmp_path / "alice-enc.pem"
    both.write_bytes((R9216 / "alice.encrypt.crt").read_bytes()
                     + (R9216 / "alice.encrypt.key").read_bytes())
    assert "1 private key(s) stored" in cli.ok("cert", "import", both).out
    bundle = cli.ok("cert", "import", PYCA / "amazon-roots.p7b")
    assert "2 new" in bundle.out
    items = cli.ok("cert", "list", "--json").json()
    assert len(items) == 4
    for item in items:
        assert CONTRACT_FIELDS <= set(item)
        assert item["serial"] == item["serial"].upper()
        int(item["serial"], 16)
    amazon = [i for i in items if "Amazon" in i["subject"]]
    assert all(not i["trusted"] for i in amazon)  # imported is not trusted


def test_roots_make_certificates_trusted(cli: Cli) -> None:  # noqa: F811
    cli.ok("cert", "import", R9216 / "alice.p12", "--password", "alice")
    sign = _fp(R9216 / "alice.sign.crt")
    assert cli.ok("cert", "show", sign, "--json").json()["trusted"] is False
    added = cli.ok("root", "add", R9216 / "ca.rsa.crt")
    assert "trusted root" in added.out
    item = cli.ok("cert", "show", sign[:12], "--json").json()
    assert item["trusted"] is True and item["trust_info"] is None
    roots = cli.ok("root", "list", "--json").json()
    assert [r["fingerprint"] for r in roots] == [_fp(R9216 / "ca.rsa.crt")]
    assert roots[0]["trusted"] is True
    # A PKCS#7 bundle of roots.
    cli.ok("root", "add", PYCA / "amazon-roots.p7b")
    assert len(cli.ok("root", "list", "--json").json()) == 3
    # An end-entity certificate is refused as a root.
    refused = cli("root", "add", R9216 / "bob.sign.crt")
    assert refused.code == 1 and "not a CA certificate" in refused.err
    cli.ok("root", "remove", _fp(R9216 / "ca.rsa.crt").upper()[:16])
    assert cli.ok("cert", "show", sign, "--json").json()["trusted"] is False
    assert cli("root", "remove", _fp(R9216 / "ca.rsa.crt")).code == 1
    text = cli.ok("cert", "show", sign).out
    assert "why not:" in text and "alice@smime.example" in text


def test_import_errors(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    p12 = R9216 / "alice.p12"
    wrong = cli("cert", "import", p12, "--password", "bob")
    assert wrong.code == 1
    assert str(p12) in wrong.err and "wrong password" in wrong.err
    assert len(wrong.err.strip().splitlines()) == 1
    none = cli("cert", "import", p12)
    assert none.code == 2 and str(p12) in none.err and "--password" in none.err
    missing = cli("cert", "import", tmp_path / "nope.pem")
    assert missing.code == 1 and "nope.pem: no such file" in missing.err
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 4)
    bad = cli("cert", "import", garbage)
    assert bad.code == 1 and "garbage.bin: not a certificate" in bad.err
    assert "Traceback" not in bad.err and "Warning" not in bad.err
    key_only = cli("cert", "import", R9216 / "alice.sign.key")
    assert key_only.code == 1 and "no certificate" in key_only.err
    pwfile = tmp_path / "pw"
    pwfile.write_text("alice\n")
    assert "2 private key(s)" in cli.ok("cert", "import", p12, "--password-file", pwfile).out
    assert cli.ok("cert", "list", "--json").json()  # only the good import stored anything


def test_export_formats(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    cli.ok("cert", "import", TB / "Bob.p12", "--password", "nss")
    fp = cli.ok("cert", "list", "--email", "bob@example.com", "--json").json()[0]["fingerprint"]
    cli.ok("cert", "export", fp, "--out", tmp_path / "bob.pem")
    cli.ok("cert", "export", fp, "--out", tmp_path / "bob.der", "--format", "der")
    out = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "bob.der"), "-inform", "der",
                          "-noout", "-fingerprint", "-sha256"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().split("=")[1].replace(":", "").lower() == fp
    assert _fp(tmp_path / "bob.pem") == fp
    pfx = tmp_path / "bob.pfx"
    cli.ok("cert", "export", fp, "--out", pfx, "--format", "pfx", "--password", "s3cret")
    assert stat.S_IMODE(pfx.stat().st_mode) == 0o600
    # OpenSSL reads it back: the key and the chain up to the NSS test CA.
    pem = subprocess.run(["openssl", "pkcs12", "-in", str(pfx), "-passin", "pass:s3cret",
                          "-nodes"], capture_output=True, text=True, check=True).stdout
    assert pem.count("BEGIN CERTIFICATE") == 2 and "BEGIN PRIVATE KEY" in pem
    # Errors: no key, no password, unknown and malformed fingerprints.
    ca_fp = [c["fingerprint"] for c in cli.ok("cert", "list", "--json").json()
             if c["is_ca"]][0]
    nokey = cli("cert", "export", ca_fp, "--out", tmp_path / "x.pfx", "--format", "pfx",
                "--password", "x")
    assert nokey.code == 1 and "no private key" in nokey.err
    assert cli("cert", "export", fp, "--out", tmp_path / "x.pfx", "--format", "pfx").code == 2
    assert cli("cert", "show", "00" * 32).code == 1
    assert cli("cert", "show", "xyz").code == 2
