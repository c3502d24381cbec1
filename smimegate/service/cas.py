"""The built-in CAs: create, list, export the chain; what ``smimegate ca``, the CA tab and
/api/v1/cas do. Creating a CA is one transaction with its audit row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smimegate.pki import authority
from smimegate.pki.errors import PkiError
from smimegate.service import audit
from smimegate.service.actor import Actor
from smimegate.service.errors import InvalidInput, Missing, OperationFailed
from smimegate.store import Store
from smimegate.store.certinfo import cert_info


@dataclass(frozen=True)
class CaOptions:
    """Every option of ``ca create``."""

    root_cn: str
    intermediate_cn: str
    name: str | None = None
    days: int | None = None
    key_type: str = "rsa2048"
    signature_algorithm: str | None = None
    email: str | None = None
    org: str | None = None
    default: bool = False


def check(opts: CaOptions) -> str:
    """The CA's name after the CLI's checks of opts. Raises InvalidInput naming the field."""
    from smimegate.pki.signing import KEY_TYPES, check_pair

    for name in ("root_cn", "intermediate_cn"):
        if not getattr(opts, name).strip():
            raise InvalidInput(f"--{name.replace('_', '-')}: must not be empty", name)
    if opts.key_type not in KEY_TYPES:
        raise InvalidInput(f"bad key type {opts.key_type!r}: one of {', '.join(KEY_TYPES)}",
                           "key_type")
    try:
        check_pair(opts.key_type, opts.signature_algorithm or None)
    except ValueError as exc:
        raise InvalidInput(str(exc), "signature_algorithm") from None
    if opts.days is not None and opts.days < 1:
        raise InvalidInput(f"--days: must be at least 1, got {opts.days}", "days")
    return (opts.name or opts.intermediate_cn).strip()


@audit.atomic
def create(store: Store, actor: Actor, opts: CaOptions) -> authority.LoadedCa:
    """Create a root and an issuing intermediate, store both with their keys (the root
    trusted, a first CRL). Raises InvalidInput, Forbidden, OperationFailed."""
    from smimegate.pki.ca import DEFAULT_DAYS, create_ca

    actor.require_change()
    name = check(opts)
    if any(r.name == name for r in store.list_cas()):
        raise OperationFailed(f"a CA named {name!r} exists already")
    try:
        pair = create_ca(
            opts.root_cn, opts.intermediate_cn,
            days=DEFAULT_DAYS if opts.days is None else opts.days, key_type=opts.key_type,
            signature_algorithm=opts.signature_algorithm or None, email=opts.email or None,
            org=opts.org or None)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    try:
        ca = authority.store_ca(store, name, pair, default=opts.default)
    except PkiError as exc:
        raise OperationFailed(str(exc)) from None
    audit.record(store, actor, "ca.create", ca.name,
                 f"{opts.key_type} root {cert_info(ca.root).fingerprint}")
    return ca


def describe(ca: authority.LoadedCa) -> dict[str, Any]:
    """One CA as ``ca list --json`` prints it."""
    from smimegate.pki.signing import key_type_of

    root, inter = cert_info(ca.root), cert_info(ca.intermediate)
    return {
        "name": ca.name,
        "default": ca.record.is_default,
        "key_type": key_type_of(ca.intermediate.public_key()),  # type: ignore[arg-type]
        "next_crl_number": ca.record.next_crl_number,
        "root": {"subject": root.subject, "fingerprint": root.fingerprint,
                 "serial": root.serial, "not_after": root.not_after.isoformat()},
        "intermediate": {"subject": inter.subject, "fingerprint": inter.fingerprint,
                         "serial": inter.serial, "not_after": inter.not_after.isoformat()},
    }


def listing(store: Store) -> list[dict[str, Any]]:
    """As ``ca list --json``. Raises PkiError for a CA that cannot be loaded."""
    return [describe(authority.load_ca(store, r.name)) for r in store.list_cas()]


def export_chain(store: Store, name: str | None) -> bytes:
    """The chain (intermediate, root) as PEM; never a key. Raises Missing (no CA of that
    name), OperationFailed."""
    if name and name not in {r.name for r in store.list_cas()}:
        raise Missing(f"no CA named {name!r} (see `smimegate ca list`)")
    try:
        return authority.load_ca(store, name or None).chain_pem()
    except PkiError as exc:
        raise OperationFailed(str(exc)) from None
