"""Private keys and queued secrets never reach the database in clear; a wrong master key is
reported as such."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from smimegate.store import MasterKeyError, SqlStore
from tests.helpers.testpki import TestCA


def _needles(key: object) -> list[bytes]:
    """Byte strings that would give the key away: PKCS#8 and traditional DER, their PEM
    bodies (any line of base64) and the raw private value."""
    out = []
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        try:
            der = key.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.DER, fmt, serialization.NoEncryption())
        except ValueError:
            continue
        out.append(der)
        out.append(base64.b64encode(der)[:64])  # the first PEM line
        pem = key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        out.append(pem.splitlines()[1])
    out.append(_secret_value(key))
    return out


def _secret_value(key: object) -> bytes:
    """The raw secret (RSA d, EC scalar, Ed25519 seed), as it would appear in any encoding."""
    if isinstance(key, rsa.RSAPrivateKey):
        d = key.private_numbers().d
        return d.to_bytes((d.bit_length() + 7) // 8, "big")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        v = key.private_numbers().private_value
        return v.to_bytes((key.curve.key_size + 7) // 8, "big")
    return key.private_bytes_raw()  # type: ignore[attr-defined,no-any-return]


def _raw_database_bytes(store_url: str) -> bytes:
    if store_url.startswith("sqlite:///"):
        path = Path(store_url[len("sqlite:///"):])
        # The main file and the write-ahead log, where fresh rows live before a checkpoint.
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    dump = []
    with psycopg.connect(store_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert "private_keys" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    dump.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(dump)


def test_no_private_key_in_clear(store: SqlStore, store_url: str, ca: TestCA) -> None:
    idents = [ca.issue(f"u{i}@x.test", kind)
              for i, kind in enumerate(("rsa2048", "ec-p256", "ed25519"))]
    for ident in idents:
        store.add_certificate(ident.cert, key=ident.key)
    store.enqueue("sms", b"your PFX password is Tr0ub4dor-secret")
    raw = _raw_database_bytes(store_url)
    # The certificates are there in clear (so the search does look at the data) ...
    assert idents[0].cert.public_bytes(serialization.Encoding.DER) in raw
    # ... the keys and the queued password are not.
    for ident in idents:
        for needle in _needles(ident.key):
            assert needle not in raw
    assert b"Tr0ub4dor" not in raw


def test_wrong_master_key_is_a_clear_error(
    store: SqlStore, open_store: Callable[..., SqlStore], tmp_path: Path, ca: TestCA
) -> None:
    alice = ca.issue("alice@x.test")
    fp = store.add_certificate(alice.cert, key=alice.key).fingerprint
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    wrong.chmod(0o600)
    other = open_store(master_key_path=wrong)
    with pytest.raises(MasterKeyError, match=r"master key does not match the store \(key id"):
        other.get_private_key(fp)
    with pytest.raises(MasterKeyError, match="does not match"):
        other.keys_for_email("alice@x.test")
    with pytest.raises(MasterKeyError, match="does not match"):
        other.verify_master_key()
    # Without a master key, lookups work and key access says what is missing.
    bare = open_store(master_key_path=None)
    assert bare.get_certificate(fp).has_key
    with pytest.raises(MasterKeyError, match="no master key configured"):
        bare.get_private_key(fp)


def test_swapped_key_rows_fail(store: SqlStore, ca: TestCA) -> None:
    a, b = ca.issue("a@x.test"), ca.issue("b@x.test")
    fa = store.add_certificate(a.cert, key=a.key).fingerprint
    fb = store.add_certificate(b.cert, key=b.key).fingerprint
    with store._db.transaction() as cur:
        blob_a = cur.one("SELECT wrapped FROM private_keys WHERE fingerprint = ?", (fa,))
        assert blob_a is not None
        cur.run("UPDATE private_keys SET wrapped = ? WHERE fingerprint = ?", (blob_a[0], fb))
    with pytest.raises(ValueError, match="another row"):
        store.get_private_key(fb)
