"""``message inspect`` with the store's keys (CONTRACT.md: "with the store's keys and roots, or
with the given ones").

Without ``--key``, each encrypted layer is opened with the keys the store holds for the
recipients its RecipientInfos name (issuer and serial, or SKI: smimegate.store.recipientkeys).
The recipients of an inner layer are only known once the outer one is open, so the message is
unwrapped again with each layer's keys added until nothing new is found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.smime.results import Unwrapped
from smimegate.smime.unwrap import unwrap
from smimegate.store.base import Store
from smimegate.store.recipientkeys import keys_for_recipients


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def unwrap_with_store_keys(
    message: bytes,
    store: Store,
    *,
    max_depth: int,
    keys: Sequence[tuple[x509.Certificate, Any]] = (),
) -> Unwrapped:
    """unwrap(message) with ``keys`` plus the store's keys for each encrypted layer met.

    Raises what unwrap raises (Malformed, Unsupported) and StoreError (MasterKeyError when the
    store has no master key, StoreUnavailable ...).
    """
    using = list(keys)
    held = {_der(cert) for cert, _key in using}
    result = unwrap(message, using, max_depth=max_depth)
    # Each turn opens at least one more layer or stops, so it ends within max_depth turns.
    while result.error is not None and result.layers:
        closed = result.layers[-1]
        if closed.kind == "signed" or closed.decrypted:
            break
        found = [(cert, key) for cert, key in
                 keys_for_recipients(store, (r.recipient_id for r in closed.recipients))
                 if _der(cert) not in held]
        if not found:
            break
        using += found
        held.update(_der(cert) for cert, _key in found)
        result = unwrap(message, using, max_depth=max_depth)
    return result
