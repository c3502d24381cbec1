"""The queue over a real SQLite store: payloads, backoff, the worker, and deliver()."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import urllib.parse
from pathlib import Path

import pytest

from smimegate.config import QueueConfig
from smimegate.delivery import DeliveryError
from smimegate.delivery import pfx as pfx_delivery
from smimegate.delivery import queue as queue_mod
from smimegate.delivery.pfx import deliver, phone_for
from smimegate.delivery.queue import (
    PFX_MAIL,
    SMS,
    PfxMailJob,
    SmsJob,
    job_of,
    next_attempt,
    run_due,
)
from smimegate.store import SqlStore
from smimegate.store.base import QueueItem
from smimegate.store.keys import ensure_master_key
from tests.helpers.ports import free_port
from tests.unit.delivery.conftest import EMAIL, PASSWORD, PHONE, MakeConfig, load
from tests.unit.delivery.servers import http_server, smtp_server

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def item(attempts: int, created: dt.datetime = T0) -> QueueItem:
    return QueueItem(1, SMS, b"", "running", attempts, created, None, created)


def test_backoff_doubles_to_the_cap_and_gives_up() -> None:
    policy = QueueConfig(retry_initial=60, retry_max=6 * 3600, give_up_days=5)
    waits = [(next_attempt(policy, item(n), T0) or T0) - T0 for n in range(11)]
    assert [w.total_seconds() for w in waits] == [
        60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600]
    near_end = T0 + dt.timedelta(days=5) - dt.timedelta(minutes=10)
    assert next_attempt(policy, item(12), near_end) == T0 + dt.timedelta(days=5)  # last try
    assert next_attempt(policy, item(13), T0 + dt.timedelta(days=5)) is None
    assert next_attempt(policy, item(0), T0, permanent=True) is None
    assert next_attempt(policy, item(10_000), T0) == T0 + dt.timedelta(hours=6)


def test_payloads_round_trip_and_hide_the_text() -> None:
    mail = PfxMailJob(EMAIL, b"\x30\x82pfx", True, "<x@y>")
    sms = SmsJob(EMAIL, PHONE, f"pw: {PASSWORD}")
    for job in (mail, sms):
        got = job_of(QueueItem(1, job.kind, job.payload(), "pending", 0, T0, None, T0))
        assert got == job
    assert PASSWORD not in repr(sms)
    with pytest.raises(DeliveryError, match="malformed") as info:
        job_of(QueueItem(1, PFX_MAIL, b'{"v": 1, "to": "a"}', "pending", 0, T0, None, T0))
    assert info.value.permanent
    with pytest.raises(DeliveryError, match="unknown"):
        job_of(QueueItem(1, "fax", b"{}", "pending", 0, T0, None, T0))


def test_payloads_are_sealed_in_the_database(store: SqlStore, store_files: tuple[str, Path],
                                             pfx: bytes) -> None:
    store.enqueue(SMS, SmsJob(EMAIL, PHONE, f"pw: {PASSWORD}").payload())
    store.enqueue(PFX_MAIL, PfxMailJob(EMAIL, pfx, True, "<x@y>").payload())
    raw = Path(store_files[0].removeprefix("sqlite:///")).read_bytes()
    assert PASSWORD.encode() not in raw and pfx[40:80] not in raw and PHONE.encode() not in raw


def sms_file_config(make_config: MakeConfig, relay_port: int, tmp_path: Path) -> Path:
    return make_config(relay_port, "[sms]", 'transport = "file"',
                       f'file = "{tmp_path / "sms.txt"}"')


def test_worker_keeps_failing_items_and_sends_them_later(
    store: SqlStore, make_config: MakeConfig, tmp_path: Path, pfx: bytes
) -> None:
    port = free_port()
    config = load(sms_file_config(make_config, port, tmp_path))
    item_id = store.enqueue(PFX_MAIL, PfxMailJob(EMAIL, pfx, False, "<m@gateway.test>").payload())
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    (outcome,) = run_due(store, config)
    assert not outcome.sent and outcome.recipient == EMAIL
    assert outcome.error is not None and f"relay 127.0.0.1:{port}" in outcome.error
    queued = store.get_queue_item(item_id)
    assert (queued.status, queued.attempts, queued.last_error) == ("pending", 1, outcome.error)
    assert before + dt.timedelta(seconds=59) <= queued.next_attempt
    assert queued.next_attempt <= before + dt.timedelta(seconds=62)
    assert run_due(store, config) == []  # not due yet

    store.retry(item_id)  # due now, as after the backoff
    with smtp_server(port) as (_, sink):
        (outcome,) = run_due(store, config)
    assert outcome.sent
    assert store.list_queue() == []
    assert len(sink.messages) == 1 and sink.messages[0].rcpt_to == [EMAIL]


def test_worker_leaves_items_that_are_not_due(
    store: SqlStore, make_config: MakeConfig, tmp_path: Path
) -> None:
    config = load(sms_file_config(make_config, free_port(), tmp_path))
    store.enqueue(SMS, SmsJob(EMAIL, PHONE, "later").payload(),
                  at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    now_id = store.enqueue(SMS, SmsJob(EMAIL, PHONE, "now").payload())
    outcomes = run_due(store, config)
    assert [(o.item_id, o.sent) for o in outcomes] == [(now_id, True)]
    assert (tmp_path / "sms.txt").read_text().split("\t")[2] == "now\n"
    assert len(store.list_queue()) == 1


def test_refused_item_is_given_up_at_once(
    store: SqlStore, make_config: MakeConfig, tmp_path: Path
) -> None:
    with http_server() as (base, endpoint):
        endpoint.status = 400
        config = load(make_config(free_port(), "[sms]", f'url = "{base}/send"'))
        item_id = store.enqueue(SMS, SmsJob(EMAIL, PHONE, "x").payload())
        (outcome,) = run_due(store, config)
    assert not outcome.sent and outcome.retry_at is None
    failed = store.get_queue_item(item_id)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert "HTTP 400" in (failed.last_error or "")
    assert run_due(store, config) == []  # failed items wait for `queue retry`


def test_item_past_give_up_time_fails(
    store: SqlStore, make_config: MakeConfig, tmp_path: Path
) -> None:
    config = load(make_config(free_port(), "[queue]", "give_up_days = 0.000001"))
    item_id = store.enqueue(PFX_MAIL, PfxMailJob(EMAIL, b"x", False, "<m@g>").payload())
    (outcome,) = run_due(store, config, now=lambda: dt.datetime.now(dt.UTC)
                         + dt.timedelta(seconds=5))
    assert outcome.retry_at is None
    assert store.get_queue_item(item_id).status == "failed"


def test_deliver_sends_mail_and_sms_and_logs_no_secret(
    store: SqlStore, make_config: MakeConfig, pfx: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store.add_user(EMAIL, {"phone": PHONE})
    caplog.set_level(logging.DEBUG, logger="smimegate")
    with smtp_server() as (port, sink), http_server() as (base, endpoint):
        config = load(make_config(port, "[sms]", f'url = "{base}/send"'))
        report = deliver(store=store, config=config, email=EMAIL, pfx=pfx, password=PASSWORD,
                         send_pfx=True, sms_password=True)
    assert [o.sent for o in report.outcomes] == [True, True]
    assert [o.kind for o in report.outcomes] == [PFX_MAIL, SMS]
    assert store.list_queue() == []
    assert PASSWORD.encode() not in sink.messages[0].data
    (req,) = endpoint.requests
    assert urllib.parse.parse_qs(req.body.decode())["text"][0].endswith(PASSWORD)
    text = "\n".join(report.lines()) + caplog.text
    assert "sent" in text and EMAIL in text
    assert PASSWORD not in text
    assert len(caplog.records) == 2
    assert all("result=sent" in r.getMessage() for r in caplog.records)


def test_deliver_claims_what_it_sends(store: SqlStore, make_config: MakeConfig, pfx: bytes,
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """deliver() holds each item while it sends it (status running, a lease): a queue worker
    claiming at that moment does not get it, even with the items due at once (no delay), and
    an item a worker got first is left to the worker. A PKCS#12 or its password never goes
    out twice."""
    store.add_user(EMAIL, {"phone": PHONE})
    monkeypatch.setattr(pfx_delivery, "_OWN_ATTEMPT_GRACE", dt.timedelta(0))
    real_send = queue_mod.send
    seen: list[tuple[list[str], list[int]]] = []

    def send_while_a_worker_claims(job: object, *args: object) -> None:
        seen.append(([i.status for i in store.list_queue()],
                     [i.id for i in store.claim(limit=10, lease=60)]))
        real_send(job, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(queue_mod, "send", send_while_a_worker_claims)
    with smtp_server() as (port, sink):
        config = load(sms_file_config(make_config, port, tmp_path))
        mail, sms = deliver(store=store, config=config, email=EMAIL, pfx=pfx,
                            password=PASSWORD, send_pfx=True, sms_password=True).outcomes
    # While the mail went out it was ours; the worker took only the SMS item, still pending.
    assert seen == [(["running", "pending"], [sms.item_id])]
    assert mail.sent and len(sink.messages) == 1
    assert not sms.sent and sms.error == "being sent by the queue worker"
    assert not (tmp_path / "sms.txt").exists()  # deliver did not send what the worker holds
    (held,) = store.list_queue()
    assert held.id == sms.item_id and held.status == "running"


def test_deliver_with_relay_down_queues_the_mail(
    store: SqlStore, make_config: MakeConfig, pfx: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    config = load(make_config(free_port()))
    report = deliver(store=store, config=config, email=EMAIL, pfx=pfx, password=PASSWORD,
                     send_pfx=True, sms_password=False)
    (outcome,) = report.outcomes
    assert not outcome.sent and outcome.retry_at is not None
    assert "queued as item" in report.lines()[0] and "not sent yet" in report.lines()[0]
    (queued,) = store.list_queue()
    assert queued.status == "pending" and queued.attempts == 1
    assert "warning: delivery deferred" in caplog.text and "retry_at=" in caplog.text


def test_deliver_needs_a_phone_before_queueing(
    store: SqlStore, make_config: MakeConfig, pfx: bytes
) -> None:
    config = load(make_config(free_port()))
    with pytest.raises(DeliveryError, match="no such user"):
        deliver(store=store, config=config, email=EMAIL, pfx=pfx, password=PASSWORD,
                send_pfx=True, sms_password=True)
    store.add_user(EMAIL)
    with pytest.raises(DeliveryError, match="user set alice@partner.test phone"):
        phone_for(store, EMAIL)
    assert store.list_queue() == []
    store.set_user_property(EMAIL, "phone", "0049 176 12345678")
    assert phone_for(store, EMAIL) == PHONE


def test_config_defaults() -> None:
    policy = QueueConfig()
    assert (policy.retry_initial, policy.retry_max, policy.give_up_days) == (60, 21600, 5.0)
    assert dataclasses.is_dataclass(policy)


def test_two_workers_on_postgresql_send_each_item_once(
    pg_url: str, tmp_path: Path, pfx: bytes
) -> None:
    key = tmp_path / "pg-master.key"
    ensure_master_key(key)
    setup = SqlStore.open(pg_url, key, check_schema=False)
    setup.migrate()
    setup.close()
    sms_file = tmp_path / "sms.txt"
    config_file = tmp_path / "pg.toml"
    config_file.write_text(f'[store]\nurl = "{pg_url}"\nmaster_key_file = "{key}"\n'
                           f'[sms]\ntransport = "file"\nfile = "{sms_file}"\n')
    config = load(config_file)
    stores = [SqlStore.open(pg_url, key) for _ in range(2)]
    try:
        for n in range(20):
            stores[0].enqueue(SMS, SmsJob(EMAIL, PHONE, f"message {n}").payload())
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda s: run_due(s, config), stores))
        assert sum(len(r) for r in results) == 20
        texts = [line.split("\t")[2] for line in sms_file.read_text().splitlines()]
        assert sorted(texts) == sorted(f"message {n}" for n in range(20))
        assert stores[1].list_queue() == []
    finally:
        for s in stores:
            s.close()


def test_unusable_sender_defers_the_item(store: SqlStore, tmp_path: Path,
                                         store_files: tuple[str, Path]) -> None:
    url, key = store_files
    path = tmp_path / "bad-sender.toml"
    path.write_text(f'[store]\nurl = "{url}"\nmaster_key_file = "{key}"\n'
                    '[smtp]\nsender = "pki@x.test\\nBcc: all@x.test"\n')
    item_id = store.enqueue(PFX_MAIL, PfxMailJob(EMAIL, b"pfx", False, "<m@g>").payload())
    (outcome,) = run_due(store, load(path))
    assert not outcome.sent and outcome.retry_at is not None
    assert "sender: not a mail address" in (store.get_queue_item(item_id).last_error or "")


def test_pfx_mail_carries_the_marker_and_waits_for_its_key(
    make_config: MakeConfig, store: SqlStore, pfx: bytes, tmp_path: Path
) -> None:
    """The PKCS#12 mail is marked (smimegate.marker) so our own milter passes it unchanged;
    without a usable key it is not sent unmarked but stays queued (a fixable, transient
    error)."""
    from smimegate.marker import MARKER_HEADER, check_marker, split_message

    with smtp_server() as (port, behaviour):
        config = load(make_config(port))
        store.enqueue(PFX_MAIL, PfxMailJob(EMAIL, pfx, False, "<m@gateway.test>").payload())
        (outcome,) = run_due(store, config)
        assert outcome.sent
        (received,) = behaviour.messages
    first, _rest = received.data.split(b"\r\n", 1)
    name, value = first.decode().split(": ", 1)
    assert name == MARKER_HEADER
    secret = (tmp_path / "reinject.key").read_bytes()
    assert check_marker(secret, value, [EMAIL], split_message(received.data)[1]).valid

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the key's folder should be")
    broken = dataclasses.replace(config, milter=dataclasses.replace(
        config.milter, reinject_secret_file=str(blocked / "reinject.key")))
    with smtp_server() as (port, behaviour):
        broken = dataclasses.replace(broken, smtp=dataclasses.replace(
            broken.smtp, relay=f"127.0.0.1:{port}"))
        store.enqueue(PFX_MAIL, PfxMailJob(EMAIL, pfx, False, "<n@gateway.test>").payload())
        (outcome,) = run_due(store, broken)
        assert not outcome.sent and outcome.retry_at is not None
        assert "cannot mark the PKCS#12 mail" in (outcome.error or "")
        assert behaviour.messages == []
