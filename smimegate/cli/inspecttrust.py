"""Trust for ``message inspect`` (issue 4, item 10): the store's roots and CRLs, plus --trust.

When a configuration is available (-c, $SMIMEGATE_CONFIG, or the default path when that file
exists), its store provides the anchors (smimegate.pki.anchors.load_anchors: roots, stored CA
certificates, CRLs) and ``[milter] header_prefix``; ``--trust`` files add roots for this run.
With neither, every signer reads Trusted False with "no trusted roots".
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from smimegate.cli.common import OperationFailed
from smimegate.cli.config import load_from_args
from smimegate.pki.anchors import load_anchors
from smimegate.pki.trust import TrustAnchors, apply_trust
from smimegate.smime.results import Layer
from smimegate.store import SchemaError, SqlStore, StoreError

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


def load_inspect_trust(
    args: argparse.Namespace, extra_roots: Sequence[x509.Certificate]
) -> InspectTrust:
    """The anchors for this run (see the module docstring).

    Raises ConfigError (exit 2) for a bad or missing named configuration; OperationFailed
    (exit 1) when the configured store cannot be opened or read.
    """
    from smimegate.cli.main import config_path  # main imports the command modules

    path, explicit = config_path(args)
    if not explicit and not Path(path).exists():
        return InspectTrust(load_anchors(None, extra_roots), None)
    config = load_from_args(args)
    try:
        # Trust needs no private keys: no master key, so an admin who may not read it can
        # still inspect messages.
        store = SqlStore.open(
            config.store.url, None,
            connect_timeout=config.store.connect_timeout,
            statement_timeout=config.store.query_timeout,
            pool_size=1,
        )
    except SchemaError as exc:
        raise OperationFailed(f"{exc} (or inspect without a configuration: --trust CA.pem)") \
            from None
    except StoreError as exc:
        raise OperationFailed(str(exc)) from None
    try:
        anchors = load_anchors(store, extra_roots)
    except StoreError as exc:
        raise OperationFailed(str(exc)) from None
    finally:
        store.close()
    return InspectTrust(anchors, path, config.milter.header_prefix)


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
