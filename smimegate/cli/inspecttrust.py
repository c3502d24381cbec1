"""The store and trust for ``message inspect`` (issue 4, item 10): the store's roots and CRLs,
plus --trust, and the store's keys (smimegate.cli.inspectkeys).

When a configuration is available (-c, $SMIMEGATE_CONFIG, or the default path when that file
exists), its store provides the anchors (smimegate.pki.anchors.load_anchors: roots, stored CA
certificates, CRLs), the private keys of the recipients, and ``[milter] header_prefix``;
``--trust`` files add roots for this run. With neither, every signer reads Trusted False with
"no trusted roots".
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from smimegate.cli.common import OperationFailed
from smimegate.cli.config import load_from_args
from smimegate.config import CrlConfig
from smimegate.pki.anchors import load_anchors
from smimegate.pki.ocsp import configured_lookup
from smimegate.pki.trust import TrustAnchors, apply_trust
from smimegate.smime.results import Layer
from smimegate.store import MasterKeyError, SchemaError, Store, StoreError
from smimegate.store.configured import open_configured

DEFAULT_HEADER_PREFIX = "X-Smimegate-Info-"
NO_ROOTS = "no trusted roots"


@dataclass(frozen=True)
class InspectTrust:
    """What ``message inspect`` checks signers against.

    config_file: the configuration whose store was read, None when there was none.
    """

    anchors: TrustAnchors
    config_file: str | None
    header_prefix: str = DEFAULT_HEADER_PREFIX
    header_protection: bool = True


@dataclass(frozen=True)
class InspectStore:
    """The configured store for one ``message inspect`` run, or None without a configuration.

    keys_problem: why the store's private keys cannot be used (the master key could not be
    read), None when they can or were not asked for.
    """

    store: Store | None
    config_file: str | None = None
    header_prefix: str = DEFAULT_HEADER_PREFIX
    keys_problem: str | None = None
    crl: CrlConfig = field(default_factory=CrlConfig)
    header_protection: bool = True

    def trust(self, extra_roots: Sequence[x509.Certificate]) -> InspectTrust:
        """The store's anchors (none without a store) plus ``extra_roots``, with [crl]
        revocation_mode and the OCSP lookup as the milter has them.

        Raises StoreError from the store.
        """
        anchors = load_anchors(self.store, extra_roots,
                               revocation_mode=self.crl.revocation_mode,
                               ocsp=configured_lookup(self.crl))
        return InspectTrust(anchors, self.config_file, self.header_prefix,
                            self.header_protection)


@contextmanager
def open_inspect_store(args: argparse.Namespace, *, keys: bool) -> Iterator[InspectStore]:
    """The store of the configuration in use (see the module docstring); closed afterwards.

    keys: the store's private keys are wanted; when the master key cannot be read the store
    still opens for trust, and keys_problem says why there are no keys. Trust needs no master
    key, so an admin who may not read it can still inspect messages.

    Raises ConfigError (exit 2) for a bad or missing named configuration; OperationFailed
    (exit 1) for StoreError while opening the store or inside the block.
    """
    from smimegate.cli.main import config_path  # main imports the command modules

    path, explicit = config_path(args)
    if not explicit and not Path(path).exists():
        yield InspectStore(None)
        return
    config = load_from_args(args)
    problem: str | None = None
    try:
        try:
            store = open_configured(config.store, keys=keys, pool_size=1)
        except MasterKeyError as exc:
            problem = str(exc)
            store = open_configured(config.store, keys=False, pool_size=1)
    except SchemaError as exc:
        raise OperationFailed(f"{exc} (or inspect without a configuration: --trust CA.pem)") \
            from None
    except StoreError as exc:
        raise OperationFailed(str(exc)) from None
    try:
        yield InspectStore(store, path, config.milter.header_prefix, problem, config.crl,
                           config.milter.header_protection)
    except StoreError as exc:
        raise OperationFailed(str(exc)) from None
    finally:
        store.close()


def apply_inspect_trust(
    layers: Sequence[Layer], anchors: TrustAnchors, at: datetime | None = None
) -> tuple[Layer, ...]:
    """apply_trust on every layer; with no roots at all the reason says so plainly."""
    out = tuple(apply_trust(layer, anchors, at) for layer in layers)
    if anchors.roots:
        return out
    return tuple(
        dataclasses.replace(layer, signers=tuple(
            dataclasses.replace(s, trust_info=NO_ROOTS) if s.valid and not s.trusted else s
            for s in layer.signers
        )) if layer.kind == "signed" else layer
        for layer in out
    )


def trust_report(
    trust: InspectTrust, summary: Callable[[x509.Certificate], dict[str, Any]]
) -> dict[str, Any]:
    """The ``trust`` object of the JSON output."""
    return {
        "evaluated": True,
        "config": trust.config_file,
        "roots": [summary(c) for c in trust.anchors.roots],
        "intermediates": len(trust.anchors.intermediates),
        "crls": len(trust.anchors.crls),
    }
