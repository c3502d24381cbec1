"""Shared by the built-in CA tests (test_ca*, test_issue*, test_crl*, test_pkcs12*): a cached CA
pair per key type and an ``openssl`` runner."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate.pki.ca import CaPair, create_ca


def ca_pair(key_type: str = "rsa2048", signature_algorithm: str | None = None) -> CaPair:
    """One CA per (key type, algorithm) for the whole test session: key generation is slow."""
    return _ca_pair(key_type, signature_algorithm)


@functools.cache
def _ca_pair(key_type: str, signature_algorithm: str | None) -> CaPair:
    return create_ca(
        f"Test Root {key_type}",
        f"Test Issuing CA {key_type}",
        key_type=key_type,
        signature_algorithm=signature_algorithm,
        org="smimegate tests",
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run openssl; with check, fail the test with its output on a non-zero exit."""
    proc = subprocess.run(
        ["openssl", *[str(a) for a in args]], capture_output=True, text=True, timeout=60,
        check=False,
    )
    if check:
        assert proc.returncode == 0, f"openssl {' '.join(map(str, args))}: {proc.stdout}{proc.stderr}"
    return proc


def verify(
    folder: Path, pair: CaPair, cert: x509.Certificate, *extra: str,
    crl: x509.CertificateRevocationList | None = None,
) -> subprocess.CompletedProcess[str]:
    """`openssl verify -CAfile root -untrusted intermediate [extra] cert` (not checked)."""
    root = write(folder, "root.pem", pem(pair.root))
    inter = write(folder, "inter.pem", pem(pair.intermediate))
    leaf = write(folder, "leaf.pem", pem(cert))
    args: list[str | Path] = ["verify", "-CAfile", root, "-untrusted", inter, *extra]
    if crl is not None:
        args += ["-crl_check", "-CRLfile",
                 write(folder, "crl.pem", crl.public_bytes(serialization.Encoding.PEM))]
    return openssl(*args, leaf, check=False)


def run(args: Sequence[str | Path], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, timeout=60, check=False,
                          **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(map(str, args))}: {proc.stdout!r} {proc.stderr!r}"
    return proc  # type: ignore[no-any-return]
