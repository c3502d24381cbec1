"""Background jobs of the milter process (issue 4 item 8): CRL download from distribution
points and the delivery queue, run by a real ``smimegate milter`` subprocess; and the boundary
of the queue worker's thread, in process."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from smimegate.config import Config, loads
from smimegate.delivery.queue import SMS, SmsJob
from smimegate.milter.jobs import BackgroundJobs, QueueWorker
from smimegate.milter.runner import start_jobs
from smimegate.milter.session import Runtime
from smimegate.store import SqlStore
from smimegate.store.base import Store, StoreUnavailable
from tests.helpers.ports import free_port
from tests.milter.daemon import PYTHON, ROOT, milter_argv, start, write_config
from tests.unit.pki import fetch_support as fs
from tests.unit.pki.ca_support import ca_pair


@pytest.fixture
def pub() -> Iterator[fs.Publisher]:
    yield from fs.publisher()


def _db_init(config: Path) -> None:
    import subprocess

    done = subprocess.run([PYTHON, "-m", "smimegate", "-c", str(config), "db", "init"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _eventually(what: str, check: Callable[[], bool], log: Callable[[], str],
                timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen; log:\n{log()}"
        time.sleep(0.1)


def _crl_fetched_by_running_milter(tmp_path: Path, pub: fs.Publisher, store_url: str = "",
                                   pool_max: int | None = None) -> str:
    """Start `smimegate milter` over a store holding a certificate whose distribution point is
    on ``pub``; return its log once it has stored the CRL (checked through the store)."""
    pair = ca_pair()
    leaf = fs.leaf(pair, "carol@partner.test", [pub.url("/issuing.crl")])
    pub.files["/issuing.crl"] = fs.der(fs.crl(pair, number=7))
    spec = f"inet:{free_port()}@127.0.0.1"
    config = write_config(tmp_path, spec, store_url=store_url,
                          tables="[crl]\nfetch_interval = 1\nfetch_timeout = 5.0\n")
    if pool_max is not None:
        config.write_text(config.read_text().replace(
            "[store]\n", f"[store]\npool_min = 1\npool_max = {pool_max}\n"))
    _db_init(config)
    url = store_url or f"sqlite:///{tmp_path}/smimegate.db"
    store = SqlStore.open(url, None)
    try:
        store.add_root(pair.root)
        store.add_certificate(pair.intermediate, source="import")
        store.add_certificate(leaf.cert, source="import")
        daemon = start(milter_argv(config), tmp_path / "milter.log", spec)
        try:
            _eventually("CRL download", lambda: bool(store.list_crls()), daemon.output)
            assert [c.crl_number for c in store.list_crls()] == [7]
            _eventually("report", lambda: "crl-fetch urls=1 fetched=1" in daemon.output(),
                        daemon.output)
            assert daemon.stop(signal.SIGTERM, timeout=15) == 0
        finally:
            daemon.stop()
    finally:
        store.close()
    assert pub.hits.get("/issuing.crl", 0) >= 1
    return daemon.output()


def test_running_milter_downloads_crls(tmp_path: Path, pub: fs.Publisher) -> None:
    out = _crl_fetched_by_running_milter(tmp_path, pub)
    assert "background jobs; crl_fetch=yes queue=yes" in out
    warnings = [line for line in out.splitlines() if "warning:" in line]
    assert all("running as root" in line for line in warnings), warnings


def test_running_milter_on_postgresql_fetches_with_pool_max_1(
    tmp_path: Path, pub: fs.Publisher, pg_url: str
) -> None:
    """The job lock holds one pool connection for the whole run and the run needs another:
    the milter's pool allows two even when pool_max says 1."""
    out = _crl_fetched_by_running_milter(tmp_path, pub, store_url=pg_url, pool_max=1)
    assert "CRL download skipped" not in out


def test_running_milter_sends_queued_sms(tmp_path: Path) -> None:
    spec = f"inet:{free_port()}@127.0.0.1"
    sms_file = tmp_path / "sms.txt"
    config = write_config(tmp_path, spec, tables=(
        '[sms]\ntransport = "file"\nfile = "sms.txt"\n[queue]\ninterval = 1\n'))
    _db_init(config)
    store = SqlStore.open(f"sqlite:///{tmp_path}/smimegate.db", tmp_path / "master.key")
    try:
        job = SmsJob("dave@partner.test", "+4917099887766", "Password for dave: Kq7Tz2")
        item = store.enqueue(SMS, job.payload())
        daemon = start(milter_argv(config), tmp_path / "milter.log", spec)
        try:
            _eventually("SMS delivery", lambda: not store.list_queue(), daemon.output)
            assert daemon.stop(signal.SIGTERM, timeout=15) == 0
        finally:
            daemon.stop()
    finally:
        store.close()
    line = sms_file.read_text().strip()
    assert line.split("\t")[1:] == ["+4917099887766", "Password for dave: Kq7Tz2"]
    out = daemon.output()
    assert f"delivery=sms queue_item={item} to=<dave@partner.test> result=sent" in out
    assert "Kq7Tz2" not in out  # the password never reaches the log


# -- in process: the worker's boundary ---------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def captured() -> Iterator[_Capture]:
    handler = _Capture()
    logger = logging.getLogger("smimegate.milter.jobs")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


class _FailingStore:
    """Just enough of a Store for run_due: claim() fails, first with a bug, then with an
    outage."""

    def __init__(self) -> None:
        self.calls = 0
        self.twice = threading.Event()

    def claim(self, limit: int = 10, lease: float = 300.0, kinds: Any = None) -> list[Any]:
        self.calls += 1
        if self.calls >= 2:
            self.twice.set()
            raise StoreUnavailable("database down")
        raise RuntimeError("a bug in claim")


def _config(queue_interval: int, fetch_interval: int = 0) -> Config:
    return loads(f"[queue]\ninterval = {queue_interval}\n[crl]\nfetch_interval = {fetch_interval}\n")


def test_queue_worker_logs_failures_and_keeps_running(captured: _Capture) -> None:
    store = _FailingStore()
    worker = QueueWorker(cast(Store, store), lambda: _config(1), first_delay=0.0).start()
    try:
        assert store.twice.wait(10), "a second round within 10 s at a 1 s interval"
        assert worker.running
    finally:
        worker.stop(10)
    assert not worker.running
    crashed = [line for line in captured.lines if "delivery queue run crashed" in line]
    skipped = [line for line in captured.lines if "delivery queue run skipped" in line]
    assert crashed and crashed[0].startswith("smimegate: warning: ")
    assert "a bug in claim" in crashed[0]
    assert skipped and "database down" in skipped[0]
    with pytest.raises(RuntimeError):
        worker.start()


def test_jobs_off_with_interval_0_and_not_started_without_a_store(captured: _Capture) -> None:
    store = _FailingStore()
    jobs = BackgroundJobs(cast(Store, store), lambda: _config(0, 0)).start()
    try:
        assert not jobs.fetcher.running and not jobs.queue.running
    finally:
        jobs.stop(1)
    assert store.calls == 0
    assert "smimegate: background jobs; crl_fetch=no queue=no" in captured.lines

    class NoStore:
        def reload(self, config: Config | None = None) -> None: ...

    runtime = Runtime(_config(1, 1), cast(Any, NoStore()))
    assert start_jobs(runtime.gateway, runtime) is None
