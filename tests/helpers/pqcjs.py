"""Run tests/interop/pqc-js/check.mjs, the independent reader of ML-KEM / ML-DSA CMS
(JavaScript: asn1js and the @noble implementations of FIPS 203/204, SHA-2, HKDF and AES).

`make test` installs its packages (npm ci, pinned by package-lock.json); node >= 20.19 comes
with the machine. Missing either is a test failure that says how to get it, never a skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

CHECKER = Path(__file__).resolve().parents[1] / "interop" / "pqc-js"


def _node() -> str:
    node = shutil.which("node")
    assert node is not None, "node is not installed (the machine image has node 20)"
    assert (CHECKER / "node_modules" / "@noble" / "post-quantum").is_dir(), (
        f"run `npm ci --prefix {CHECKER}` (make test does it)")
    return node


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([_node(), str(CHECKER / "check.mjs"), *args], capture_output=True,
                          timeout=120, check=False)


def decrypt(folder: Path, cms_der: bytes, key: Any) -> bytes:
    """The content of an Enveloped/AuthEnvelopedData, opened with the ML-KEM key (an object
    of cryptography, or PKCS#8 DER). Fails the test with the checker's message."""
    pk8 = key if isinstance(key, bytes) else key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (folder / "js-in.der").write_bytes(cms_der)
    (folder / "js-key.der").write_bytes(pk8)
    done = run("decrypt", str(folder / "js-in.der"), str(folder / "js-key.der"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def verify(folder: Path, cms_der: bytes, content: bytes | None = None) -> list[dict[str, Any]]:
    """Every signer (countersignatures after the signer they sign) as the checker reports it:
    {"algorithm", "valid", "reason", "countersigns"}."""
    (folder / "js-in.der").write_bytes(cms_der)
    args = ["verify", str(folder / "js-in.der")]
    if content is not None:
        (folder / "js-content").write_bytes(content)
        args.append(str(folder / "js-content"))
    done = run(*args)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result
