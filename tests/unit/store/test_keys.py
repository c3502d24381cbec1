"""The master key file and sealing (no database needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from smimegate.store import InvalidData, MasterKeyError
from smimegate.store.keys import (
    MasterKey,
    create_master_key,
    ensure_master_key,
    load_master_key,
)


def test_create_is_0600_and_32_bytes(tmp_path: Path) -> None:
    old = os.umask(0)  # a permissive umask must not leak into the key file
    try:
        key, created = ensure_master_key(tmp_path / "mk")
    finally:
        os.umask(old)
    assert created
    st = os.stat(tmp_path / "mk")
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (tmp_path / "mk").read_bytes() == key.secret and len(key.secret) == 32
    again, created = ensure_master_key(tmp_path / "mk")
    assert not created and again.key_id == key.key_id
    with pytest.raises(MasterKeyError, match="already exists"):
        create_master_key(tmp_path / "mk")


def test_refuses_missing_wrong_size_and_readable(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="does not exist.*db init"):
        load_master_key(tmp_path / "absent")
    short = tmp_path / "short"
    short.write_bytes(b"x" * 31)
    short.chmod(0o600)
    with pytest.raises(MasterKeyError, match="31 bytes, expected 32"):
        load_master_key(short)
    long = tmp_path / "long"
    long.write_bytes(b"x" * 64)
    long.chmod(0o600)
    with pytest.raises(MasterKeyError, match="65 bytes|64 bytes|33 bytes"):
        load_master_key(long)
    loose = tmp_path / "loose"
    loose.write_bytes(os.urandom(32))
    loose.chmod(0o640)
    with pytest.raises(MasterKeyError, match="group or others.*chmod 600"):
        load_master_key(loose)
    with pytest.raises(MasterKeyError, match="not a regular file"):
        load_master_key(tmp_path)


def test_seal_binds_context_and_key(tmp_path: Path) -> None:
    key = MasterKey(os.urandom(32))
    other = MasterKey(os.urandom(32))
    sealed = key.seal(b"secret pkcs8", b"row-1")
    assert b"secret pkcs8" not in sealed
    assert key.open(sealed, b"row-1", key.key_id) == b"secret pkcs8"
    assert key.seal(b"secret pkcs8", b"row-1") != sealed  # fresh nonce each time
    with pytest.raises(InvalidData, match="another row"):
        key.open(sealed, b"row-2", key.key_id)
    with pytest.raises(InvalidData):
        key.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), b"row-1", key.key_id)
    with pytest.raises(MasterKeyError, match=f"does not match the store.*{key.key_id}"):
        other.open(sealed, b"row-1", key.key_id)
    assert "secret" not in repr(key) and key.secret.hex() not in repr(key)
