"""NIST PKITS's 224 signed messages through the gateway's inbound path (issue 10 item 4).

The same store as tests/unit/pki/test_pkits.py (PKITS trust anchor as root, the certificates
the milter harvests from the messages, every PKITS CRL imported), here with
``[crl] revocation_mode = "require"`` in the configuration and each message delivered from
outside to an internal recipient as Postfix would hand it over. What counts is the header the
gateway adds, ``Signer-Trusted-0-0``, against NIST's expected outcome; the disagreements must be
exactly those the path test lists (the gateway decides through the same trust code).

The gateway decides "now" (the time of receipt): the PKITS 2011 data is valid until
2030-12-31, so from 2031 on this needs NIST's renewed data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from smimegate.milter.edit import apply_header_edits
from smimegate.milter.gateway import Gateway
from tests.milter.gateway_support import envelope, make_config, parse
from tests.unit.pki.pkits_support import cases, fill, open_store, read_message
from tests.unit.pki.test_pkits import DISAGREEMENTS

SENDER = "sender@testcertificates.gov"
RECIPIENT = "recipient@pkits.internal.test"
TRUSTED = "X-Smimegate-Info-Signer-Trusted-0-0"
INFO = "X-Smimegate-Info-Signer-Trusted-Info-0-0"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    root = Path(tmp_path_factory.mktemp("pkits-gateway"))
    store, config_file = open_store(root)
    fill(store, config_file)
    store.add_domain("pkits.internal.test", {"locality": "internal"})
    store.add_user(RECIPIENT)
    config = make_config(root)
    config = dataclasses.replace(
        config, crl=dataclasses.replace(config.crl, revocation_mode="require"))
    return Gateway.create(config, store)


def test_pkits_messages_through_the_gateway(gateway: Gateway) -> None:
    differ: dict[str, str] = {}
    for case in cases():
        headers, body = parse(read_message(case).replace(
            b"To: recipient@testcertificates.gov", f"To: {RECIPIENT}".encode(), 1))
        outcome = gateway.process(envelope(SENDER, RECIPIENT, client="198.51.100.7"),
                                  headers, body)
        assert outcome.reply.kind == "continue", (case.section, outcome.log_line)
        added = dict(apply_header_edits(headers, outcome.header_edits))
        trusted = added.get(TRUSTED)
        assert trusted in ("True", "False"), (case.section, outcome.log_line)
        if (trusted == "True") != case.valid:
            differ[case.section] = f"{case.title}: {TRUSTED}: {trusted} ({added.get(INFO)})"
    assert set(differ) == set(DISAGREEMENTS), "\n".join(
        [f"{224 - len(differ)}/224 agree; differences:"] + sorted(differ.values()))
