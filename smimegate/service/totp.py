"""An optional second factor for admin accounts: time-based one-time passwords (RFC 6238).

The parameters are those every authenticator app takes from an ``otpauth://`` URI: a 160-bit
secret (RFC 4226 4 R6 asks for at least 128 bits, recommends 160), HMAC-SHA1, six digits, a
30-second step (RFC 6238 4.1, 5.2). Codes of the current step and of the one before and after
are accepted, for clocks that differ a little and codes typed near a step's end (RFC 6238 5.2
allows one step of network delay; we allow one each way), and a step is accepted once only:
a code seen on the wire cannot be replayed (RFC 6238 5.2, "MUST NOT accept the second
attempt").

The secret is sealed with the master key as private keys are (AES-256-GCM, the account name
as associated data), so a copy of the database alone does not give it away; `smimegate web`
must then read the master key to check codes, as it does to export keys.
"""

from __future__ import annotations

import base64
import hmac
import os
import time
import urllib.parse

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from smimegate.service import audit
from smimegate.service.accounts import name_arg
from smimegate.service.actor import Actor
from smimegate.store import SqlStore, Store, StoreError
from smimegate.store.accounts import accounts_of

SECRET_BYTES = 20
DIGITS = 6
STEP = 30
ISSUER = "smimegate"
_AAD = b"smimegate totp\x00"


def _master(store: Store) -> SqlStore:
    if not isinstance(store, SqlStore):
        raise StoreError("this store keeps no admin accounts")
    return store


def _totp(secret: bytes) -> TOTP:
    # SHA-1 is what RFC 6238's default and every authenticator app use; HMAC-SHA1 stays a
    # sound PRF (RFC 6151), collisions of SHA-1 do not matter here.
    return TOTP(secret, DIGITS, SHA1(), STEP, enforce_key_length=True)  # noqa: S303


def uri(name: str, secret: bytes) -> str:
    """The otpauth URI an authenticator app reads (as a QR code or typed in)."""
    label = urllib.parse.quote(f"{ISSUER}:{name}")
    query = urllib.parse.urlencode({
        "secret": base64.b32encode(secret).decode("ascii").rstrip("="), "issuer": ISSUER,
        "algorithm": "SHA1", "digits": DIGITS, "period": STEP})
    return f"otpauth://totp/{label}?{query}"


def enrol(store: Store, actor: Actor, name: str) -> str:
    """Give the account a new TOTP secret (replacing one it had); returns its otpauth URI,
    the only time the secret is shown. Raises InvalidInput, Forbidden, MasterKeyError,
    StoreError (NotFound)."""
    actor.require_change()
    name = name_arg(name)
    master = _master(store).master_key()
    secret = os.urandom(SECRET_BYTES)
    accounts_of(store).set_totp(name, master.seal(secret, _AAD + name.encode()), master.key_id)
    audit.record(store, actor, "admin.totp", name, "enrolled")
    return uri(name, secret)


def disable(store: Store, actor: Actor, name: str) -> None:
    """Remove the account's second factor. Raises InvalidInput, Forbidden, StoreError."""
    actor.require_change()
    name = name_arg(name)
    accounts_of(store).set_totp(name, None, None)
    audit.record(store, actor, "admin.totp", name, "disabled")


def enrolled(store: Store, name: str) -> bool:
    """Whether the account has a second factor. Raises StoreError (NotFound)."""
    return accounts_of(store).totp(name) is not None


def check(store: Store, name: str, code: str, at: float | None = None) -> bool:
    """Whether ``code`` is a valid code of the account not used before (see the module doc);
    a valid one is then used up. An account without TOTP: True. Raises MasterKeyError
    (the web process cannot read the master key), StoreError."""
    accounts = accounts_of(store)
    enrolment = accounts.totp(name)
    if enrolment is None:
        return True
    digits = code.strip().replace(" ", "")
    if len(digits) != DIGITS or not digits.isdigit():
        return False
    secret = _master(store).master_key().open(enrolment.sealed, _AAD + name.encode(),
                                              enrolment.key_id)
    moment = time.time() if at is None else at
    step = int(moment) // STEP
    totp = _totp(secret)
    for candidate in (step - 1, step, step + 1):
        expected = totp.generate(candidate * STEP)
        if hmac.compare_digest(expected, digits.encode("ascii")):
            return accounts.use_totp_step(name, candidate)
    return False


def code_at(secret_b32: str, at: float) -> str:
    """The code for a base32 secret at a time (tests, and `admin totp` showing a first code
    to compare with the app's)."""
    padded = secret_b32 + "=" * (-len(secret_b32) % 8)
    return _totp(base64.b32decode(padded)).generate(at).decode("ascii")
