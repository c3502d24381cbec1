"""The master key and the sealing of secrets at rest (private keys, queued payloads).

The master key file holds 32 random bytes, mode 0600. A secret is sealed with AES-256-GCM
(NIST SP 800-38D) under that key with a fresh 96-bit random nonce; the associated data binds the
sealed blob to its row (for a private key, the certificate fingerprint), so swapping blobs
between rows fails authentication instead of handing out the wrong key. Each sealed row also
records the key id of the master key, so a wrong master key is reported as such instead of as
a corrupt row.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smimegate.store.base import InvalidData, MasterKeyError

KEY_SIZE = 32
NONCE_SIZE = 12
# First byte of every sealed blob, so the format can change later without guessing.
FORMAT_V1 = b"\x01"


@dataclass(frozen=True)
class MasterKey:
    """32 secret bytes and their public key id (the first 8 bytes of a SHA-256, in hex)."""

    secret: bytes = field(repr=False)
    path: str = ""

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_SIZE:
            raise MasterKeyError(
                f"master key {self.path or '(memory)'} has {len(self.secret)} bytes, "
                f"expected {KEY_SIZE}"
            )

    @property
    def key_id(self) -> str:
        # A domain-separated hash: it names the key without helping anyone guess it.
        return hashlib.sha256(b"smimegate master key id\x00" + self.secret).hexdigest()[:16]

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """Encrypt plaintext bound to context (AAD). Returns FORMAT_V1 || nonce || ct+tag."""
        nonce = os.urandom(NONCE_SIZE)
        return FORMAT_V1 + nonce + AESGCM(self.secret).encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes, key_id: str) -> bytes:
        """Decrypt what seal() made for the same context.

        Raises MasterKeyError when key_id names another master key, InvalidData when the blob
        is corrupt or belongs to another row.
        """
        if key_id != self.key_id:
            raise MasterKeyError(
                f"master key does not match the store (key id {self.key_id} from "
                f"{self.path or '(memory)'}, stored keys use key id {key_id})"
            )
        if len(sealed) < 1 + NONCE_SIZE + 16 or sealed[:1] != FORMAT_V1:
            raise InvalidData("sealed data is truncated or of an unknown format")
        nonce, body = sealed[1 : 1 + NONCE_SIZE], sealed[1 + NONCE_SIZE :]
        try:
            return AESGCM(self.secret).decrypt(nonce, body, context)
        except InvalidTag:
            raise InvalidData(
                "sealed data fails authentication (corrupt, or moved from another row)"
            ) from None


def load_master_key(path: str | os.PathLike[str]) -> MasterKey:
    """Read the master key file.

    Raises MasterKeyError when it is missing, unreadable, not exactly 32 bytes, or readable or
    writable by group or others (a key anyone can read protects nothing).
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise MasterKeyError(
            f"master key file {p} does not exist (`smimegate db init` creates it)"
        ) from None
    except OSError as exc:
        raise MasterKeyError(f"cannot open master key file {p}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise MasterKeyError(f"master key file {p} is not a regular file")
        if mode & 0o077:
            raise MasterKeyError(
                f"master key file {p} is accessible by group or others (mode "
                f"{stat.S_IMODE(mode):04o}); run: chmod 600 {p}"
            )
        data = os.read(fd, KEY_SIZE + 1)
    finally:
        os.close(fd)
    return MasterKey(data, str(p))


def create_master_key(path: str | os.PathLike[str]) -> MasterKey:
    """Create a new master key file (0600) with 32 random bytes; never overwrite one.

    Raises MasterKeyError when the file exists or cannot be written.
    """
    p = Path(path)
    secret = os.urandom(KEY_SIZE)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise MasterKeyError(f"master key file {p} already exists") from None
    except OSError as exc:
        raise MasterKeyError(f"cannot create master key file {p}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits, never added: make it exact
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    return MasterKey(secret, str(p))


def ensure_master_key(path: str | os.PathLike[str]) -> tuple[MasterKey, bool]:
    """Load the master key, creating it first when absent (for `db init`).

    Returns (key, created). Raises MasterKeyError as load_master_key does.
    """
    if not os.path.lexists(path):
        try:
            return create_master_key(path), True
        except MasterKeyError:
            if not os.path.lexists(path):
                raise
            # Another process created it between our check and our create: use theirs.
    return load_master_key(path), False
