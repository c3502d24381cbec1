"""CRL download (issue 4, item 8): distribution points of stored certificates over HTTP (a
loopback http.server) and LDAP (a private slapd), checks, newest-wins, `crl fetch`, the periodic
fetcher and the PostgreSQL job lock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate import config as cfg
from smimegate.cli.main import main
from smimegate.pki import fetch
from smimegate.pki.anchors import load_anchors
from smimegate.pki.crl import crl_number
from smimegate.pki.trust import check
from smimegate.service import audit
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from smimegate.store.operations import operations_of
from tests.helpers.x509damage import crl_with_version
from tests.unit.pki import fetch_support as fs
from tests.unit.pki.ca_support import ca_pair

TIMEOUT = 5.0


@pytest.fixture
def pub() -> Iterator[fs.Publisher]:
    yield from fs.publisher()


def _relying_store(url: str, pair_leaves: list[x509.Certificate]) -> SqlStore:
    """A gateway store that trusts the session CA's root and holds its intermediate and leaves,
    but no CRL."""
    store = SqlStore.open(url, None, create=True, check_schema=False)
    store.migrate()
    pair = ca_pair()
    store.add_root(pair.root)
    store.add_certificate(pair.intermediate, source="import")
    for cert in pair_leaves:
        store.add_certificate(cert, source="import")
    return store


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    key = tmp_path / "master.key"
    ensure_master_key(key)
    path = tmp_path / "smimegate.toml"
    path.write_text(f'[store]\nurl = "{url}"\nmaster_key_file = "{key}"\n'
                    "[crl]\nfetch_timeout = 1.0\n")
    return path


def _store_url(config_file: Path) -> str:
    return cfg.load(config_file).store.url


def _cli(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["-c", str(config), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _trust(store: SqlStore, cert: x509.Certificate):  # type: ignore[no-untyped-def]
    return check(cert, load_anchors(store), purpose="sign")


# --- the item 8 acceptance test --------------------------------------------------------------


def test_crl_fetch_over_http_makes_trust_say_revoked(pub, config_file, capsys):
    leaf = fs.leaf(ca_pair(), "revoked@example.org", [pub.url("/issuing.crl")])
    other = fs.leaf(ca_pair(), "fine@example.org", [pub.url("/issuing.crl")])
    store = _relying_store(_store_url(config_file), [leaf.cert, other.cert])
    try:
        before = _trust(store, leaf.cert)
        assert before.trusted and before.revocation == "unknown"  # no CRL yet: soft-fail

        pub.files["/issuing.crl"] = fs.der(fs.crl(revoked=[leaf.cert.serial_number], number=7))
        code, out, err = _cli(capsys, config_file, "crl", "fetch")
        assert code == 0, err
        assert out.splitlines()[0].startswith(f"fetched    {pub.url('/issuing.crl')}  CRL #7 of ")
        assert "1 revoked" in out and out.splitlines()[-1] == "1 fetched, 0 unchanged, 0 failed"
        assert pub.hits["/issuing.crl"] == 1  # both leaves name it: fetched once
        # Recorded as the CRLs tab's "Download now" is: the audit row, the URL's outcome.
        (row,) = audit.entries(store, search="crl.fetch")
        assert (row.via, row.target, row.detail) == (
            "cli", "distribution points", "1 fetched, 0 unchanged, 0 failed")
        assert [d.url for d in operations_of(store).crl_downloads()] == [
            pub.url("/issuing.crl")]

        after = _trust(store, leaf.cert)
        assert not after.trusted and after.revocation == "revoked"
        assert after.reason is not None and after.reason.startswith("revoked (keyCompromise)")
        still = _trust(store, other.cert)
        # Trusted; "unknown" rather than "good" since no root CRL covers the intermediate.
        assert still.trusted and still.reason is None
        (record,) = store.list_crls()
        assert record.crl_number == 7 and record.source == f"fetch:{pub.url('/issuing.crl')}"

        # The same CRL again changes nothing.
        code, out, _err = _cli(capsys, config_file, "crl", "fetch", "--json")
        assert code == 0
        (outcome,) = json.loads(out)
        assert outcome["status"] == "unchanged" and "holds this one" in outcome["detail"]
    finally:
        store.close()


# --- checks ----------------------------------------------------------------------------------


def _fetch(store: SqlStore, *urls: str, timeout: float = TIMEOUT) -> fetch.FetchReport:
    return fetch.fetch_all(store, timeout=timeout, urls=list(urls))


def test_crl_signed_by_an_unknown_key_is_kept_unverified_and_never_used(pub, tmp_path):
    pair = ca_pair()
    leaf = fs.leaf(pair, "a@example.org", [pub.url("/forged.crl")])
    store = _relying_store(f"sqlite:///{tmp_path / 's.db'}", [leaf.cert])
    try:
        # Same issuer name as our intermediate, another key: a forgery.
        impostor = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        forged = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(pair.intermediate.subject)
            .last_update(now).next_update(now + dt.timedelta(days=1))
            .add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(leaf.cert.serial_number)
                .revocation_date(now).build())
            .sign(impostor, hashes.SHA256())
        )
        pub.files["/forged.crl"] = fs.der(forged)
        # A CRL of a CA nobody told us about.
        stranger = ca_pair("ec-p256")
        pub.files["/stranger.crl"] = fs.der(fs.crl(stranger))
        report = _fetch(store, pub.url("/forged.crl"), pub.url("/stranger.crl"))
        forged_out, stranger_out = report.outcomes
        # Issue 10 item 1: every well-formed CRL is kept; the forged one is reported as failed
        # and marked unverified, the stranger's waits for its issuer.
        assert forged_out.status == "failed"
        assert forged_out.detail.startswith("signature does not verify") and \
            "kept, not used" in forged_out.detail
        assert stranger_out.status == "fetched" and "issuer not a CA of the store yet" in \
            stranger_out.detail
        assert not report.all_failed
        assert sorted(str(r.verified) for r in store.list_crls()) == ["False", "None"]
        # The forged listing never counts: trust checks each CRL against the path's issuer.
        assert _trust(store, leaf.cert).trusted
    finally:
        store.close()


def test_an_older_crl_never_replaces_a_newer_one(pub, tmp_path):
    pair = ca_pair()
    leaf = fs.leaf(pair, "a@example.org", [pub.url("/ca.crl")])
    store = _relying_store(f"sqlite:///{tmp_path / 's.db'}", [leaf.cert])
    try:
        now = dt.datetime.now(dt.UTC)
        pub.files["/ca.crl"] = fs.der(fs.crl(number=5, this_update=now - dt.timedelta(hours=1)))
        (first,) = _fetch(store, pub.url("/ca.crl")).outcomes
        assert first.status == "fetched" and first.crl_number == 5

        # An older CRL (lower number, earlier thisUpdate) that lists the leaf: a stale mirror.
        older = fs.crl(revoked=[leaf.cert.serial_number], number=3,
                       this_update=now - dt.timedelta(days=2))
        pub.files["/ca.crl"] = fs.der(older)
        (second,) = _fetch(store, pub.url("/ca.crl")).outcomes
        assert second.status == "unchanged" and "holds a newer one: CRL #5" in second.detail
        assert [r.crl_number for r in store.list_crls()] == [5]
        assert _trust(store, leaf.cert).trusted

        # A higher number wins even with the same thisUpdate second.
        newer = fs.crl(revoked=[leaf.cert.serial_number], number=6,
                       this_update=now - dt.timedelta(hours=1))
        pub.files["/ca.crl"] = newer.public_bytes(Encoding.PEM)  # PEM is read too
        (third,) = _fetch(store, pub.url("/ca.crl")).outcomes
        assert third.status == "fetched" and third.crl_number == 6
        assert [crl_number(x509.load_der_x509_crl(r.der)) for r in store.list_crls()] == [6]
        assert not _trust(store, leaf.cert).trusted
    finally:
        store.close()


def test_404_timeout_garbage_future_and_delta_are_reported(pub, tmp_path):
    store = _relying_store(f"sqlite:///{tmp_path / 's.db'}", [])
    try:
        now = dt.datetime.now(dt.UTC)
        pub.slow["/slow.crl"] = 3.0
        pub.files["/slow.crl"] = fs.der(fs.crl())
        pub.files["/garbage.crl"] = b"<html>not a CRL</html>"
        pub.files["/future.crl"] = fs.der(fs.crl(this_update=now + dt.timedelta(hours=2)))
        pair = ca_pair()
        delta = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(pair.intermediate.subject)
            .last_update(now).next_update(now + dt.timedelta(days=1))
            .add_extension(x509.DeltaCRLIndicator(1), critical=True)
            .sign(pair.intermediate_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        pub.files["/delta.crl"] = fs.der(delta)
        pub.files["/stale.crl"] = fs.der(fs.crl(this_update=now - dt.timedelta(days=10), days=2))
        # Version 18 (v2 is 1): cryptography raises InvalidVersion, which is no ValueError.
        pub.files["/badversion.crl"] = crl_with_version(fs.der(fs.crl()), 0x11)
        closed = fs.free_port()
        report = _fetch(
            store, pub.url("/missing.crl"), pub.url("/slow.crl"), pub.url("/garbage.crl"),
            pub.url("/future.crl"), pub.url("/delta.crl"), f"http://127.0.0.1:{closed}/x.crl",
            "ftp://example.org/x.crl", pub.url("/stale.crl"), pub.url("/badversion.crl"),
            timeout=0.5,
        )
        details = {o.url.rsplit("/", 1)[-1]: (o.status, o.detail) for o in report.outcomes}
        assert details["missing.crl"] == ("failed", "HTTP 404 Not Found")
        assert details["slow.crl"] == ("failed", "timed out after 0.5 s")
        assert details["garbage.crl"] == ("failed", "not a CRL (neither DER nor PEM)")
        assert details["future.crl"][0] == "failed" and "is in the future" in \
            details["future.crl"][1]
        # Delta CRLs are kept next to their base CRL (issue 10 item 1).
        assert details["delta.crl"][0] == "fetched"
        assert report.outcomes[5].status == "failed"
        assert report.outcomes[5].detail.startswith("cannot connect: ")
        assert report.outcomes[6] == fetch.FetchOutcome(
            "ftp://example.org/x.crl", "failed", "unsupported URL scheme 'ftp'")
        # A stale CRL is still the best we have: kept, and said so.
        assert details["stale.crl"][0] == "fetched" and "(stale" in details["stale.crl"][1]
        assert details["badversion.crl"] == ("failed", "not a CRL (neither DER nor PEM)")
        assert report.summary() == "2 fetched, 0 unchanged, 7 failed"
        assert not report.all_failed
    finally:
        store.close()


def test_crl_fetch_exits_1_when_every_url_fails(pub, config_file, capsys):
    pub.slow["/slow.crl"] = 3.0
    leaf = fs.leaf(ca_pair(), "a@example.org", [pub.url("/missing.crl"), pub.url("/slow.crl")])
    store = _relying_store(_store_url(config_file), [leaf.cert])
    store.close()
    code, out, err = _cli(capsys, config_file, "crl", "fetch")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"failed     {pub.url('/missing.crl')}  HTTP 404 Not Found"
    assert lines[1] == f"failed     {pub.url('/slow.crl')}  timed out after 1 s"
    assert lines[2] == "0 fetched, 0 unchanged, 2 failed"
    assert err == "smimegate: error: every CRL download failed (2 URLs)\n"


def test_no_distribution_points_is_not_an_error(config_file, capsys):
    _relying_store(_store_url(config_file), []).close()
    code, out, err = _cli(capsys, config_file, "crl", "fetch")
    assert code == 0 and out == ""
    assert "no CRL distribution points" in err


def test_crl_urls_come_from_usable_certificates_once(tmp_path):
    pair = ca_pair()
    a = fs.leaf(pair, "a@example.org", ["http://crl.test/a.crl", "ldap://ldap.test/cn=x"])
    b = fs.leaf(pair, "b@example.org", ["http://crl.test/a.crl", "file:///etc/passwd"])
    blocked = fs.leaf(pair, "c@example.org", ["http://crl.test/blocked.crl"])
    store = _relying_store(f"sqlite:///{tmp_path / 's.db'}", [a.cert, b.cert, blocked.cert])
    try:
        store.set_certificate_blocked(
            store.add_certificate(blocked.cert).fingerprint, True)
        assert sorted(fetch.crl_urls(store)) == ["http://crl.test/a.crl", "ldap://ldap.test/cn=x"]
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)  # every leaf expired by then
        assert fetch.crl_urls(store, later) == []
        assert fetch.distribution_points(b.cert) == ["http://crl.test/a.crl"]
        assert fetch.distribution_points(pair.root) == []
    finally:
        store.close()


# --- LDAP ------------------------------------------------------------------------------------


def test_parse_ldap_url_per_rfc_4516():
    spec = fetch.parse_ldap_url(
        "ldap://ldap.example.com/cn=Issuing%20CA,o=Example%2C%20Inc,c=US"
        "?certificateRevocationList;binary,authorityRevocationList?sub?(cn=*)")
    assert spec == fetch.LdapUrl(
        use_ssl=False, host="ldap.example.com", port=389, dn="cn=Issuing CA,o=Example, Inc,c=US",
        attributes=("certificateRevocationList;binary", "authorityRevocationList"),
        scope="sub", filter="(cn=*)")
    plain = fetch.parse_ldap_url("ldaps://[::1]:1636/cn=CA")
    assert (plain.use_ssl, plain.host, plain.port, plain.scope, plain.filter, plain.attributes) \
        == (True, "::1", 1636, "base", "(objectClass=*)", ("certificateRevocationList;binary",))
    for url, why in [
        ("ldap:///cn=CA", "names no host"),
        ("ldap://h/", "names no entry"),
        ("ldap://h/cn=CA??tree", "unknown scope"),
        ("ldap://h/cn=CA????!bindname=cn=x", "critical extension"),
        ("ldap://h:99999/cn=CA", "bad port"),
    ]:
        with pytest.raises(fetch.FetchError, match=why):
            fetch.parse_ldap_url(url)
    # A non-critical extension is ignored (RFC 4516 2.3).
    assert fetch.parse_ldap_url("ldap://h/cn=CA????bindname=cn=x").dn == "cn=CA"


@pytest.fixture
def slapd_with_crl(tmp_path: Path) -> Iterator[Callable[[bytes], fs.Slapd]]:
    started: list[fs.Slapd] = []

    def start(crl_der: bytes) -> fs.Slapd:
        folder = tmp_path / f"slapd{len(started)}"
        folder.mkdir()
        started.append(fs.start_slapd(folder, crl_der))
        return started[-1]

    yield start
    for server in started:
        fs.stop_slapd(server)


def test_ldap_distribution_point_through_a_real_slapd(slapd_with_crl, tmp_path):
    leaf = fs.leaf(ca_pair(), "ldap@example.org")
    slapd = slapd_with_crl(fs.der(fs.crl(revoked=[leaf.cert.serial_number], number=11)))
    url = slapd.url()
    store = _relying_store(f"sqlite:///{tmp_path / 's.db'}", [leaf.cert])
    try:
        (outcome,) = _fetch(store, url).outcomes
        assert outcome.status == "fetched", outcome.detail
        assert outcome.crl_number == 11
        result = _trust(store, leaf.cert)
        assert not result.trusted and result.revocation == "revoked"

        (missing,) = _fetch(store, slapd.url(f"cn=Nobody,{fs.SUFFIX}")).outcomes
        assert missing.status == "failed" and missing.detail.startswith("LDAP: no entry ")
        (no_attr,) = _fetch(store, slapd.url(fs.SUFFIX)).outcomes
        assert no_attr.status == "failed" and "has no certificateRevocationList" in \
            no_attr.detail
    finally:
        store.close()


def test_ldap_url_in_a_certificate_is_collected_and_fetched(slapd_with_crl, tmp_path):
    slapd = slapd_with_crl(fs.der(fs.crl(number=12)))
    leaf = fs.leaf(ca_pair(), "dp@example.org", [slapd.url()])
    store = _relying_store(f"sqlite:///{tmp_path / 's.db'}", [leaf.cert])
    try:
        report = fetch.fetch_all(store, timeout=TIMEOUT)
        assert [(o.url, o.status, o.crl_number) for o in report.outcomes] == [
            (slapd.url(), "fetched", 12)]
        assert [r.crl_number for r in store.list_crls()] == [12]
        assert _trust(store, leaf.cert).trusted
    finally:
        store.close()


# --- the periodic fetcher --------------------------------------------------------------------


def _config(interval: int) -> cfg.Config:
    base = cfg.Config()
    return dataclasses.replace(
        base, crl=dataclasses.replace(base.crl, fetch_interval=interval, fetch_timeout=2.0))


def test_periodic_fetcher_runs_soon_after_start_then_every_interval(pub, tmp_path):
    pair = ca_pair()
    leaf = fs.leaf(pair, "p@example.org", [pub.url("/p.crl")])
    pub.files["/p.crl"] = fs.der(fs.crl(revoked=[leaf.cert.serial_number], number=21))
    store = _relying_store(f"sqlite:///{tmp_path / 's.db'}", [leaf.cert])
    reports: list[fetch.FetchReport] = []
    two = threading.Event()
    refreshed: list[int] = []

    def on_report(report: fetch.FetchReport) -> None:
        reports.append(report)
        if len(reports) == 2:
            two.set()

    fetcher = fetch.PeriodicFetcher(store, _config(1), first_delay=0.05,
                                    on_report=on_report, refresh=lambda: refreshed.append(1))
    try:
        assert fetcher.start() is fetcher and fetcher.running
        assert two.wait(10), "two runs within 10 s at a 1 s interval"
        assert [r.count("fetched") for r in reports[:2]] == [1, 0]
        assert reports[1].count("unchanged") == 1
        assert refreshed == [1]  # only a run that stored something refreshes the anchors
        assert not _trust(store, leaf.cert).trusted
    finally:
        fetcher.stop(10)
        store.close()
    assert not fetcher.running
    with pytest.raises(RuntimeError):
        fetcher.start()


def test_periodic_fetcher_off_with_interval_0_and_survives_a_store_outage(tmp_path):
    store = _relying_store(f"sqlite:///{tmp_path / 's.db'}", [])
    off = fetch.PeriodicFetcher(store, _config(0))
    assert off.start() is off and not off.running
    off.stop()
    store.close()  # every query now raises StoreUnavailable
    reports: list[fetch.FetchReport] = []
    fetcher = fetch.PeriodicFetcher(store, _config(1), first_delay=0.0,
                                    on_report=reports.append).start()
    try:
        threading.Event().wait(0.3)
        assert fetcher.running and reports == []  # logged, not crashed
    finally:
        fetcher.stop(10)


def test_job_lock_lets_one_postgresql_node_run(pg_url, pub):
    leaf = fs.leaf(ca_pair(), "pg@example.org", [pub.url("/pg.crl")])
    pub.files["/pg.crl"] = fs.der(fs.crl(number=31))
    node1 = _relying_store(pg_url, [leaf.cert])
    node2 = SqlStore.open(pg_url, None)
    try:
        with node1.job_lock(fetch.JOB_NAME) as got1:
            assert got1
            with node2.job_lock(fetch.JOB_NAME) as got2:
                assert not got2
            # Node 2 skips this round while node 1 holds the lock.
            assert fetch.PeriodicFetcher(node2, _config(60)).run_once() is None
            with node2.job_lock("another-job") as other:
                assert other
        report = fetch.PeriodicFetcher(node2, _config(60)).run_once()
        assert report is not None and report.count("fetched") == 1
        assert [r.crl_number for r in node1.list_crls()] == [31]
    finally:
        node1.close()
        node2.close()
