"""`cert import` and `root add` of bundles holding a certificate that cannot be read (RFC 4134's
DSA certificate whose key inherits its parameters, which cryptography refuses): every other
certificate is stored, each bad one is named with its place in the file, the exit status is 1.
Bundles are made with real openssl (crl2pkcs7). On both backends."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest

from smimegate.store import StoreUnavailable
from smimegate.store.keys import MasterKey
from tests.helpers.x509damage import cert_with_version
from tests.unit.cli.admin_support import R9216, VECTORS, Cli, cli  # noqa: F401

RFC4134 = VECTORS / "rfc4134"
CARL, BOB = RFC4134 / "CarlRSASelf.pem", RFC4134 / "BobRSASignByCarl.pem"
DIANE = RFC4134 / "DianeDSSSignByCarlInherit.pem"
DSA_REASON = "its DSA public key inherits its parameters from the issuer (RFC 3279 2.3.2)"


def _mixed_pem(tmp: Path) -> Path:
    """Carl (CA), Diane (unreadable), Bob, and a CERTIFICATE block that is no certificate."""
    junk = base64.encodebytes(b"\x30\x03\x02\x01\x05").decode()
    path = tmp / "mixed.pem"
    path.write_text(CARL.read_text() + DIANE.read_text() + BOB.read_text()
                    + f"-----BEGIN CERTIFICATE-----\n{junk}-----END CERTIFICATE-----\n")
    return path


def _subjects(cli: Cli) -> set[str]:  # noqa: F811
    return {c["subject"] for c in cli.ok("cert", "list", "--json").json()}


def test_pem_bundle_imports_what_it_can_and_names_the_rest(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    bundle = _mixed_pem(tmp_path)
    result = cli("cert", "import", bundle)
    assert result.code == 1
    assert f"{bundle}: 2 new, 0 already stored, 0 private key(s) stored, 2 not readable" \
        in result.out
    errors = result.err.strip().splitlines()
    assert errors == [
        f"smimegate: error: {bundle}: certificate 2 (CN=DianeDSS): {DSA_REASON}, "
        "which is not supported",
        f"smimegate: error: {bundle}: certificate 4: not a well-formed certificate: "
        + errors[1].split("not a well-formed certificate: ", 1)[1],
    ]
    assert "Traceback" not in result.err
    assert _subjects(cli) == {"CN=CarlRSA", "CN=BobRSA"}
    again = cli("cert", "import", bundle)
    assert again.code == 1 and "0 new, 2 already stored" in again.out


def test_pkcs7_bundle_made_by_openssl(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    pem = tmp_path / "three.pem"
    pem.write_text(CARL.read_text() + DIANE.read_text() + BOB.read_text())
    for form in ("DER", "PEM"):
        p7b = tmp_path / f"three.{form.lower()}.p7b"
        subprocess.run(["openssl", "crl2pkcs7", "-nocrl", "-certfile", str(pem), "-outform",
                        form, "-out", str(p7b)], check=True, capture_output=True, timeout=60)
        result = cli("cert", "import", p7b)
        assert result.code == 1, result.err
        assert f"{p7b}: certificate 2 (CN=DianeDSS): {DSA_REASON}" in result.err
        assert len(result.err.strip().splitlines()) == 1
    assert _subjects(cli) == {"CN=CarlRSA", "CN=BobRSA"}


def test_a_lone_unreadable_certificate_is_named(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    der = tmp_path / "diane.cer"
    subprocess.run(["openssl", "x509", "-in", str(DIANE), "-outform", "DER", "-out", str(der)],
                   check=True, capture_output=True, timeout=60)
    for path in (DIANE, der):
        result = cli("cert", "import", path)
        assert result.code == 1
        assert result.err.strip() == (f"smimegate: error: {path}: certificate 1 (CN=DianeDSS): "
                                      f"{DSA_REASON}, which is not supported")
        assert "0 new, 0 already stored, 0 private key(s) stored, 1 not readable" in result.out
    assert _subjects(cli) == set()


def test_root_add_trusts_the_cas_and_names_the_others(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    bundle = tmp_path / "roots.pem"
    bundle.write_text(DIANE.read_text() + BOB.read_text() + CARL.read_text())
    result = cli("root", "add", bundle)
    assert result.code == 1
    assert "trusted root" in result.out and "CN=CarlRSA" in result.out
    errors = result.err.strip().splitlines()
    assert len(errors) == 2
    assert "CN=BobRSA is not a CA certificate" in errors[0]
    assert f"certificate 1 (CN=DianeDSS): {DSA_REASON}" in errors[1]
    assert [r["subject"] for r in cli.ok("root", "list", "--json").json()] == ["CN=CarlRSA"]


def test_a_failure_part_way_leaves_whole_certificates_only(
    cli: Cli, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """The store fails while sealing the second private key of a PKCS#12: the first
    certificate is stored with its key, nothing of the second (its row was written in the same
    transaction and is rolled back), and the command says so in one line."""
    seal = MasterKey.seal
    calls = []

    def failing_seal(self: MasterKey, *args: Any) -> bytes:
        calls.append(args)
        if len(calls) == 2:
            raise StoreUnavailable("database went away (test)")
        return seal(self, *args)

    monkeypatch.setattr(MasterKey, "seal", failing_seal)
    result = cli("cert", "import", R9216 / "alice.p12", "--password", "alice")
    assert result.code == 1 and result.err.strip() == \
        "smimegate: error: database went away (test)"
    monkeypatch.setattr(MasterKey, "seal", seal)
    listed = cli.ok("cert", "list", "--json").json()
    with_key = [c for c in listed if c["has_key"]]
    assert len(with_key) == 1  # the first pair whole
    store = cli.store()
    try:
        for item in listed:  # no certificate row without the key it came with
            record = store.get_certificate(item["fingerprint"])
            assert record.has_key or record.is_ca
    finally:
        store.close()
    again = cli.ok("cert", "import", R9216 / "alice.p12", "--password", "alice")
    assert "1 private key(s) stored" in again.out


def test_a_certificate_with_an_unknown_version_is_named(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    """cryptography raises InvalidVersion (not a ValueError) for a version other than v1-v3."""
    der = base64.b64decode("".join(BOB.read_text().splitlines()[1:-1]))
    bad = base64.encodebytes(cert_with_version(der, 7)).decode()
    bundle = tmp_path / "bad-version.pem"
    bundle.write_text(CARL.read_text()
                      + f"-----BEGIN CERTIFICATE-----\n{bad}-----END CERTIFICATE-----\n")
    result = cli("cert", "import", bundle)
    assert result.code == 1 and "1 new" in result.out
    assert result.err.startswith(f"smimegate: error: {bundle}: certificate 2 (CN=BobRSA): ")
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
