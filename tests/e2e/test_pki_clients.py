"""The built-in CA's output in real clients: PKCS#12 of both profiles imported into NSS
(Thunderbird's library) and the legacy one into gpgsm; the imported keys then sign, and the
certificates validate for S/MIME in NSS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from smimegate.pki.ca import CaPair, create_ca
from smimegate.pki.issue import IssueRequest, Subject, issue_certificate
from smimegate.pki.passwords import generate_password
from smimegate.pki.pkcs12 import make_pkcs12
from smimegate.pki.signing import new_key
from tests.e2e.clients import run


@dataclass(frozen=True)
class Pfx:
    email: str
    cert: x509.Certificate
    path: Path
    password: str


@pytest.fixture(scope="module")
def pair() -> CaPair:
    return create_ca("PKI Clients Root", "PKI Clients Issuing CA", key_type="rsa2048",
                     org="smimegate e2e")


@pytest.fixture(scope="module")
def ca_files(pair: CaPair, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ca")
    root, inter = folder / "root.crt", folder / "inter.crt"
    root.write_bytes(pair.root.public_bytes(serialization.Encoding.PEM))
    inter.write_bytes(pair.intermediate.public_bytes(serialization.Encoding.PEM))
    return root, inter


def make_pfx(pair: CaPair, folder: Path, email: str, key_type: str, profile: str) -> Pfx:
    key = new_key(key_type)
    cert = issue_certificate(IssueRequest(Subject(email)), key.public_key(), pair.intermediate,
                             pair.intermediate_key)
    password = generate_password()
    path = folder / f"{email}.{profile}.p12"
    path.write_bytes(make_pkcs12(key, cert, [pair.intermediate, pair.root], password,
                                 profile_name=profile, friendly_name=email))
    return Pfx(email, cert, path, password)


@pytest.mark.parametrize("profile", ["modern", "legacy"])
@pytest.mark.parametrize("key_type", ["rsa2048", "ec-p256"])
def test_nss_imports_pfx_and_validates_for_email(
    pair: CaPair, ca_files: tuple[Path, Path], tmp_path: Path, profile: str, key_type: str
) -> None:
    email = f"nss-{key_type}-{profile}@example.org"
    pfx = make_pfx(pair, tmp_path, email, key_type, profile)
    db = f"sql:{tmp_path / 'db'}"
    (tmp_path / "db").mkdir()
    run(["certutil", "-N", "-d", db, "--empty-password"])
    run(["pk12util", "-i", pfx.path, "-d", db, "-W", pfx.password, "-K", ""])
    listing = run(["certutil", "-L", "-d", db]).stdout.decode()
    assert email in listing  # the friendly name became the nickname
    assert "PKI Clients Issuing CA" in listing  # the chain came along
    keys = run(["certutil", "-K", "-d", db, "-f", os.devnull]).stdout.decode()
    assert email in keys
    # Trust our root for S/MIME (the second trust field) and let NSS validate the certificate.
    run(["certutil", "-A", "-d", db, "-n", "root", "-t", "C,C,C", "-i", ca_files[0]])
    signer = run(["certutil", "-V", "-d", db, "-n", email, "-u", "S"]).stdout.decode()
    assert "certificate is valid" in signer
    # Recipient use: keyEncipherment (RSA) and keyAgreement (EC) both satisfy NSS.
    recipient = run(["certutil", "-V", "-d", db, "-n", email, "-u", "R"]).stdout.decode()
    assert "certificate is valid" in recipient
    # The imported private key signs: a detached signature that NSS verifies as good.
    data = tmp_path / "part"
    data.write_bytes(b"Content-Type: text/plain\r\n\r\nhello from NSS\r\n")
    sig = tmp_path / "p.sig"
    run(["cmsutil", "-S", "-d", db, "-N", email, "-T", "-G", "-P", "-H", "SHA256", "-i", data,
         "-o", sig])
    status = run(["cmsutil", "-D", "-d", db, "-i", sig, "-c", data, "-n", "-u", "4", "-h", "2"])
    assert "signer0.status=GoodSignature" in status.stdout.decode()


@pytest.fixture
def gnupghome(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    (home / "gpgsm.conf").write_text(
        "disable-crl-checks\ndisable-policy-checks\ndisable-dirmngr\n")
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    yield home
    run(["gpgconf", "--kill", "all"], env={"GNUPGHOME": str(home)}, check=False)


def test_gpgsm_imports_the_legacy_pfx_and_signs(
    pair: CaPair, ca_files: tuple[Path, Path], tmp_path: Path, gnupghome: Path
) -> None:
    email = "gpgsm@example.org"
    pfx = make_pfx(pair, tmp_path, email, "rsa2048", "legacy")
    env = {"GNUPGHOME": str(gnupghome)}
    gpgsm = ["gpgsm", "--batch"]
    loopback = ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
    run([*gpgsm, "--import", ca_files[0]], env=env)
    run([*gpgsm, *loopback, "--import", pfx.path], input=pfx.password.encode() + b"\n", env=env)
    secret = run([*gpgsm, "--list-secret-keys", email], env=env).stdout.decode()
    assert email in secret
    fingerprint = pair.root.fingerprint(hashes.SHA1()).hex().upper()
    (gnupghome / "trustlist.txt").write_text(f"{fingerprint} S relax\n")
    data = tmp_path / "part"
    data.write_bytes(b"hello from gpgsm\r\n")
    sig = tmp_path / "p.sig"
    run([*gpgsm, *loopback, "-u", email, "--include-certs", "-1", "--detach-sign", "-o", sig,
         data], input=pfx.password.encode() + b"\n", env=env)  # gpgsm keeps the PFX password
    status = run([*gpgsm, "--status-fd", "1", "--verify", sig, data], env=env).stdout.decode()
    assert "GOODSIG" in status and "TRUST_FULLY" in status
    # VALIDSIG names the signing certificate by its SHA-1 fingerprint: the one we issued.
    assert pfx.cert.fingerprint(hashes.SHA1()).hex().upper() in status
