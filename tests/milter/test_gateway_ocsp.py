"""The gateway asks OCSP ([crl] ocsp) for an inbound signer no CRL covers (issue 10, item 3).

A signer revoked only at its OCSP responder (a real `openssl ocsp` on loopback) reads
Signer-Trusted False with the revocation as Trusted-Info; with `ocsp = false` nothing says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from smimegate import config as cfg
from smimegate.milter.edit import apply_header_edits
from smimegate.milter.gateway import Gateway
from smimegate.smime.sign import sign
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from tests.milter.gateway_support import AUTHSERV, INTERNAL, envelope, parse
from tests.unit.pki import pkibuild
from tests.unit.pki.ocsp_support import NOW, OcspServer, index_line, leaf, openssl_responder, serve

P = "X-Smimegate-Info-"
FRANK = "frank@external.test"
BOB = f"bob@{INTERNAL}"


@pytest.fixture
def server() -> Iterator[OcspServer]:
    yield from serve()


def _gateway(root: Path, ca: pkibuild.Issued, crl: str) -> Gateway:
    ensure_master_key(root / "master.key")
    store = SqlStore.open(f"sqlite:///{root / 'store.db'}", root / "master.key",
                          check_schema=False, create=True)
    store.migrate()
    store.add_root(ca.cert)
    store.add_domain(INTERNAL, {"locality": "internal"})
    store.add_user(BOB)
    config = cfg.loads(
        f'[store]\nurl = "sqlite:///{root / "store.db"}"\n'
        f'master_key_file = "{root / "master.key"}"\n'
        f'[milter]\nauthserv_id = "{AUTHSERV}"\n'
        f'reinject_secret_file = "{root / "reinject.key"}"\n'
        f"[crl]\n{crl}", "test")
    return Gateway.create(config, store)


def _signer_headers(gateway: Gateway, frank: pkibuild.Issued) -> dict[str, str]:
    raw = (f"From: {FRANK}\r\nTo: {BOB}\r\nSubject: hi\r\nMessage-ID: <1@x.test>\r\n"
           f"MIME-Version: 1.0\r\n").encode() + sign(
        b"Content-Type: text/plain\r\n\r\nhello\r\n", frank.key, frank.cert)
    headers, body = parse(raw)
    outcome = gateway.process(envelope(FRANK, BOB, client="198.51.100.7"), headers, body)
    assert outcome.reply.kind == "continue"
    return {n: v for n, v in apply_header_edits(headers, outcome.header_edits)
            if n.startswith(P)}


@pytest.mark.parametrize("ocsp", [True, False])
def test_inbound_signer_revoked_at_its_responder(server: OcspServer, tmp_path: Path,
                                                 ocsp: bool) -> None:
    ca = pkibuild.root("Gateway OCSP Root", not_before=NOW - dt.timedelta(days=10))
    frank = leaf(ca, server.url, FRANK)
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    server.respond = openssl_responder(tmp_path / "responder", ca, ca,
                                       [index_line(frank.cert, (when, "keyCompromise"))],
                                       "-ndays", "1")
    gateway = _gateway(tmp_path, ca, f"ocsp = {'true' if ocsp else 'false'}\n")
    try:
        found = _signer_headers(gateway, frank)
    finally:
        gateway.close()
    assert found[f"{P}Signer-Verified-0-0"] == "True"
    if ocsp:
        assert found[f"{P}Signer-Trusted-0-0"] == "False"
        assert found[f"{P}Signer-Trusted-Info-0-0"].startswith("revoked (keyCompromise) ")
        assert server.requests == 1
    else:
        assert found[f"{P}Signer-Trusted-0-0"] == "True"
        assert server.requests == 0
