"""Message counters, latency histogram, log lines and heartbeats (smimegate.milter.stats over
smimegate.store.operations) on SQLite and PostgreSQL: lines parsed as the gateway writes them,
sums that add across workers and nodes, nothing lost by a failed write, pruning."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from smimegate import log
from smimegate.config import Config, MilterConfig
from smimegate.milter.stats import LABELS, MessageStats, StatsFlusher, bucket_of, parse_line
from smimegate.store import SqlStore, StoreError
from smimegate.store.operations import COUNTS_KEEP_HOURS, HOUR, Batch, hour_of, operations_of


def _config(interval: int = 30, rows: int = 1000) -> Callable[[], Config]:
    config = Config(milter=MilterConfig(stats_interval=interval, message_log_rows=rows))
    return lambda: config


def _out(queue_id: str, sender: str, to: str, result: str = "ok",
         direction: str = "outbound") -> str:
    return log.message_line(queue_id, [
        ("direction", direction), ("action", "sign+encrypt"), ("from", f"<{sender}>"),
        ("to", to), ("subject_note", 'has "quotes" and = signs'), ("delay", 0.14),
        ("result", result)])


def test_parse_line_reads_what_the_log_writes() -> None:
    line = _out("4Xk2q1GZ", "a@x", "<B@y>,<c@z>", "refused")
    queue_id, fields = parse_line(line) or ("", {})
    assert queue_id == "4Xk2q1GZ"
    assert fields["result"] == "refused" and fields["to"] == "<B@y>,<c@z>"
    assert fields["subject_note"] == 'has "quotes" and = signs'
    assert parse_line(log.warning_line("Q1", "cannot decrypt", {"reason": "no key"})) is None
    assert parse_line("garbage") is None
    assert parse_line('Q: smimegate: a="unbalanced') is None
    assert bucket_of(0.001) == "0.005" and bucket_of(0.3) == "0.5" and bucket_of(99) == "+Inf"
    assert LABELS[-2:] == ("10.0", "+Inf")


def test_flushes_add_up_across_workers_and_nodes(store: SqlStore) -> None:
    ops = operations_of(store)
    one, two = MessageStats(), MessageStats()
    w0 = StatsFlusher(one, store, _config(), worker=0, node="mx1")
    w1 = StatsFlusher(two, store, _config(), worker=1, node="mx2")
    one.enabled = two.enabled = True
    one.record(_out("Q1", "a@x", "<b@y>"), 0.003)
    one.record(_out("Q2", "a@x", "<b@y>", "refused"), 0.2)
    one.record(log.message_line("Q2", {"action": "reinject", "to": "<b@y>"}))
    one.record(log.message_line("Q3", {"action": "rcpt-refused", "from": "<a@x>",
                                       "to": "<m@y>", "reply": "550 5.7.1 no cert"}))
    one.record(log.warning_line("Q1", "something odd"))
    two.record(_out("Q4", "c@x", "<d@y>"), 30.0)
    two.record(_out("Q5", "e@y", "<f@x>", direction="inbound"), 0.04)
    w0.flush()
    w1.flush()
    w0.flush()  # nothing new: adds nothing
    hour = hour_of(time.time())
    counts = {(d, r): n for h, d, r, n, _ in ops.counts(hour - 3600) if h == hour}
    assert counts == {("outbound", "ok"): 2, ("outbound", "refused"): 1,
                      ("inbound", "ok"): 1, ("unknown", "refused"): 1}
    totals = {(d, r): (n, us) for d, r, n, us in ops.totals()}
    assert totals[("outbound", "ok")] == (2, 30_003_000)
    latency = {(d, le): n for d, le, n in ops.latency_totals()}
    assert latency == {("outbound", "0.005"): 1, ("outbound", "0.25"): 1,
                       ("outbound", "+Inf"): 1, ("inbound", "0.05"): 1}
    workers = {(w.node, w.worker): w for w in ops.workers()}
    assert set(workers) == {("mx1", 0), ("mx2", 1)}
    assert all(w.up(int(time.time())) for w in workers.values())
    assert not workers[("mx1", 0)].up(int(time.time()) + 200)
    lines = ops.log_lines()
    assert [ln.queue_id for ln in lines] == ["Q5", "Q4", "Q3", "Q2", "Q2", "Q1"]
    assert [ln.queue_id for ln in ops.log_lines(address="B@Y")] == ["Q2", "Q2", "Q1"]
    assert [ln.queue_id for ln in ops.log_lines(queue_id="q2")] == ["Q2", "Q2"]
    assert [ln.queue_id for ln in ops.log_lines(direction="inbound")] == ["Q5"]
    assert [ln.queue_id for ln in ops.log_lines(result="refused")] == ["Q3", "Q2"]
    assert [ln.queue_id for ln in ops.log_lines(after=lines[1].id)] == ["Q5"]
    assert [ln.queue_id for ln in ops.log_lines(address="%")] == []  # LIKE escaped
    assert ops.log_values() == (["inbound", "outbound", "unknown"], ["ok", "refused"])


def test_a_failed_write_keeps_everything_for_the_next(
        open_store: Callable[..., SqlStore]) -> None:
    store = open_store()
    store.migrate()
    stats = MessageStats()
    flusher = StatsFlusher(stats, store, _config())
    stats.enabled = True
    stats.record(_out("Q1", "a@x", "<b@y>"), 0.01)
    ops = operations_of(store)
    real = ops.flush

    def broken(*args: object, **kwargs: object) -> None:
        raise StoreError("store down")

    flusher._ops.flush = broken  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        flusher.flush()
    stats.record(_out("Q2", "a@x", "<b@y>"), 0.01)
    flusher._ops.flush = real  # type: ignore[method-assign]
    flusher.flush()
    assert [(d, r, n) for d, r, n, _ in ops.totals()] == [("outbound", "ok", 2)]
    assert [ln.queue_id for ln in ops.log_lines()] == ["Q2", "Q1"]


def test_not_enabled_records_nothing_and_rows_0_stores_no_lines(store: SqlStore) -> None:
    stats = MessageStats()
    stats.record(_out("Q1", "a@x", "<b@y>"), 0.01)
    assert stats.take() == []
    flusher = StatsFlusher(stats, store, _config(rows=0))
    stats.enabled = True
    stats.record(_out("Q1", "a@x", "<b@y>"), 0.01)
    flusher.flush()
    ops = operations_of(store)
    assert ops.log_lines() == [] and ops.totals()[0][2] == 1


def test_prune_by_age_and_count(store: SqlStore) -> None:
    ops = operations_of(store)
    stats = MessageStats()
    stats.enabled = True
    flusher = StatsFlusher(stats, store, _config())
    for n in range(10):
        stats.record(_out(f"Q{n}", "a@x", "<b@y>"), 0.01)
    flusher.flush()
    assert ops.prune_log(0, 4) == 6
    assert [ln.queue_id for ln in ops.log_lines()] == ["Q9", "Q8", "Q7", "Q6"]
    assert ops.prune_log(int(time.time()) + 10, 100) == 4
    assert ops.log_lines() == []


def test_prune_folds_old_hours_and_the_totals_stay(store: SqlStore) -> None:
    ops = operations_of(store)
    now = hour_of(time.time())
    old, older = now - (COUNTS_KEEP_HOURS + 2) * HOUR, now - (COUNTS_KEEP_HOURS + 30) * HOUR
    ops.flush(Batch(
        counts={(older, "outbound", "ok"): (3, 300), (old, "outbound", "ok"): (2, 200),
                (old, "inbound", "ok"): (1, 50), (now, "outbound", "ok"): (5, 500)},
        latency={(older, "outbound", "0.05"): 3, (old, "outbound", "0.05"): 2,
                 (now, "outbound", "0.05"): 5},
        lines=[]))
    before = (ops.totals(), ops.latency_totals())
    ops.prune_log(0, 100)
    ops.prune_log(0, 100)  # a second pruning folds nothing twice
    assert (ops.totals(), ops.latency_totals()) == before
    assert before[0] == [("inbound", "ok", 1, 50), ("outbound", "ok", 10, 1000)]
    # Only hour 0 (the folded past) and the kept hours remain.
    assert sorted({h for h, *_ in ops.counts()}) == [0, now]


def test_flush_thread_writes_without_being_asked(store: SqlStore) -> None:
    stats = MessageStats()
    flusher = StatsFlusher(stats, store, _config(interval=1), worker=3, node="mx9").start()
    try:
        assert flusher.running and stats.enabled
        stats.record(_out("Q1", "a@x", "<b@y>"), 0.01)
        ops = operations_of(store)
        deadline = time.monotonic() + 20
        while not ops.totals():
            assert time.monotonic() < deadline, "the thread never flushed"
            time.sleep(0.05)
        assert [(w.node, w.worker) for w in ops.workers()] == [("mx9", 3)]
    finally:
        flusher.stop()
    # A clean stop removes the heartbeat: a worker that stopped is not "down".
    assert ops.workers() == []


def test_crl_download_outcomes_per_url(store: SqlStore) -> None:
    from smimegate.pki.fetch import FetchOutcome, FetchReport
    from smimegate.service.monitoring import record_crl_report

    a, b = "http://ca.test/a.crl", "ldap://dir.test/cn=b"
    record_crl_report(store, FetchReport((FetchOutcome(a, "failed", "timed out"),
                                          FetchOutcome(b, "fetched", "CRL 3"))))
    record_crl_report(store, FetchReport((FetchOutcome(a, "failed", "HTTP 404"),
                                          FetchOutcome(b, "unchanged", "CRL 3"))))
    rows = {d.url: d for d in operations_of(store).crl_downloads()}
    assert (rows[a].failures, rows[a].last_error, rows[a].last_success) == (2, "HTTP 404", None)
    assert (rows[b].failures, rows[b].last_error) == (0, None)
    assert rows[b].last_success is not None
    record_crl_report(store, FetchReport((FetchOutcome(a, "fetched", "CRL 1"),)))
    fixed = {d.url: d for d in operations_of(store).crl_downloads()}[a]
    assert (fixed.failures, fixed.last_error) == (0, None)
