"""Harvested SMIMECapabilities in the store (migration 0003), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from smimegate.store import InvalidData, SqlStore
from tests.helpers.testpki import TestCA

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def test_newer_signing_time_wins(store: SqlStore, ca: TestCA) -> None:
    fp = store.add_certificate(ca.issue("gina@external.test").cert).fingerprint
    assert store.certificate_capabilities([fp]) == {}
    assert store.set_certificate_capabilities(fp, ["aes256-gcm", "rsaes-oaep"], T0)
    caps = store.certificate_capabilities([fp.upper(), fp])[fp]
    assert (caps.names, caps.signing_time) == (("aes256-gcm", "rsaes-oaep"), T0)
    # An older message changes nothing; a newer one (or one as new) replaces the list.
    assert not store.set_certificate_capabilities(fp, ["aes128-cbc"], T0 - dt.timedelta(days=1))
    assert store.certificate_capabilities([fp])[fp].names == ("aes256-gcm", "rsaes-oaep")
    assert store.set_certificate_capabilities(fp, ["aes128-cbc"], T0)
    later = T0 + dt.timedelta(hours=1)
    assert store.set_certificate_capabilities(fp, ["1.2.3.4", "aes128-gcm"], later)
    caps = store.certificate_capabilities([fp])[fp]
    assert (caps.names, caps.signing_time) == (("1.2.3.4", "aes128-gcm"), later)


def test_unknown_certificate_naive_time_and_cascade(store: SqlStore, ca: TestCA) -> None:
    with pytest.raises(InvalidData):
        store.set_certificate_capabilities("ab" * 32, ["aes256-gcm"], T0)
    fp = store.add_certificate(ca.issue("hans@external.test").cert).fingerprint
    with pytest.raises(InvalidData):
        store.set_certificate_capabilities(fp, ["aes256-gcm"], T0.replace(tzinfo=None))
    with pytest.raises(InvalidData):
        store.set_certificate_capabilities(fp, ["aes 256"], T0)
    store.set_certificate_capabilities(fp, ["aes256-gcm"], T0)
    store.remove_certificate(fp)
    assert store.certificate_capabilities([fp]) == {}
    assert store.certificate_capabilities([]) == {}
