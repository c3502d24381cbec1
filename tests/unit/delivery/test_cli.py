"""``smimegate queue list|retry|delete|run`` and ``cert issue --send-pfx --sms-password``
through the console entry point, over SQLite, with real servers on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from smimegate.cli import main as main_mod
from smimegate.delivery.queue import PFX_MAIL, SMS, PfxMailJob, SmsJob
from smimegate.store import SqlStore
from tests.helpers.ports import free_port
from tests.unit.delivery.conftest import EMAIL, PASSWORD, PHONE, MakeConfig
from tests.unit.delivery.servers import smtp_server

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli_for(capsys: pytest.CaptureFixture[str]) -> Callable[[Path], Cli]:
    def bind(config: Path) -> Cli:
        def run(*argv: str) -> tuple[int, str, str]:
            capsys.readouterr()
            rc = main_mod.main(["-c", str(config), *argv])
            out, err = capsys.readouterr()
            return rc, out, err
        return run
    return bind


def test_list_retry_delete(store: SqlStore, make_config: MakeConfig, cli_for: Callable[[Path], Cli],
                           pfx: bytes) -> None:
    port = free_port()
    cli = cli_for(make_config(port))
    rc, out, err = cli("queue", "list")
    assert (rc, out.strip()) == (0, "queue is empty")
    mail_id = store.enqueue(PFX_MAIL, PfxMailJob(EMAIL, pfx, True, "<m@g>").payload())
    sms_id = store.enqueue(SMS, SmsJob("bob@partner.test", PHONE, f"pw {PASSWORD}").payload())

    rc, out, err = cli("queue", "retry", str(mail_id))
    assert rc == 1
    assert f"queue item {mail_id}: relay 127.0.0.1:{port}" in err and "next attempt" in err
    assert len(err.strip().splitlines()) == 1

    rc, out, err = cli("queue", "list", "--json")
    assert rc == 0, err
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[mail_id]["kind"] == PFX_MAIL and rows[mail_id]["recipient"] == EMAIL
    assert rows[mail_id]["status"] == "pending" and rows[mail_id]["attempts"] == 1
    assert "refused" in rows[mail_id]["last_error"]
    assert rows[mail_id]["next_attempt"] > rows[mail_id]["created"]
    assert rows[sms_id]["recipient"] == "bob@partner.test" and rows[sms_id]["attempts"] == 0
    assert set(rows[sms_id]) == {"id", "kind", "recipient", "status", "attempts",
                                 "next_attempt", "last_error", "created"}
    rc, table, _ = cli("queue", "list")
    assert table.splitlines()[0].split()[:4] == ["ID", "KIND", "RECIPIENT", "STATUS"]
    assert EMAIL in table and "refused" in table
    for text in (out, table):  # never the payload
        assert PASSWORD not in text and PHONE not in text

    with smtp_server(port) as (_, sink):
        rc, out, err = cli("queue", "retry", str(mail_id))
    assert rc == 0, err
    assert f"queue item {mail_id} (pfx-mail for {EMAIL}) sent" in out
    assert len(sink.messages) == 1

    rc, out, err = cli("queue", "delete", str(sms_id))
    assert rc == 0 and f"queue item {sms_id} deleted" in out
    assert store.list_queue() == []
    rc, out, err = cli("queue", "delete", str(sms_id))
    assert rc == 1 and f"no queue item {sms_id}" in err
    rc, out, err = cli("queue", "retry", "12345")
    assert rc == 1 and "no queue item 12345" in err
    rc, out, err = cli("queue", "retry", "x")
    assert rc == 2 and "not a queue item id" in err


def test_retry_claims_the_item_first(store: SqlStore, make_config: MakeConfig,
                                     cli_for: Callable[[Path], Cli], tmp_path: Path) -> None:
    sms_file = tmp_path / "sms.txt"
    cli = cli_for(make_config(free_port(), "[sms]", 'transport = "file"', f'file = "{sms_file}"'))
    item_id = store.enqueue(SMS, SmsJob(EMAIL, PHONE, "held").payload())
    [held] = store.claim()  # a worker is sending it
    rc, out, err = cli("queue", "retry", str(item_id))
    assert rc == 1 and "being sent by a worker right now" in err
    assert not sms_file.exists()
    store.fail(held.id, "deferred by the worker", None)  # given up: only a retry sends it now
    rc, out, err = cli("queue", "retry", str(item_id))
    assert rc == 0, err
    assert sms_file.read_text().count("held") == 1
    assert store.list_queue() == []


def test_run_sends_what_is_due(store: SqlStore, make_config: MakeConfig,
                               cli_for: Callable[[Path], Cli], tmp_path: Path) -> None:
    sms_file = tmp_path / "sms.txt"
    cli = cli_for(make_config(free_port(), "[sms]", 'transport = "file"', f'file = "{sms_file}"'))
    for text in ("one", "two"):
        store.enqueue(SMS, SmsJob(EMAIL, PHONE, text).payload())
    rc, out, err = cli("queue", "run")
    assert rc == 0, err
    assert out.strip() == "2 due, 2 sent, 0 not sent"
    assert [line.split("\t")[2] for line in sms_file.read_text().splitlines()] == ["one", "two"]


def create_ca(cli: Cli) -> None:
    rc, out, err = cli("ca", "create", "--root-cn", "Delivery Root", "--intermediate-cn",
                       "Delivery CA", "--key-type", "ec-p256")
    assert rc == 0, err


def test_issue_without_phone_stops_before_issuing(
    store: SqlStore, make_config: MakeConfig, cli_for: Callable[[Path], Cli], tmp_path: Path
) -> None:
    cli = cli_for(make_config(free_port(), "[sms]", 'transport = "file"',
                              f'file = "{tmp_path / "sms.txt"}"'))
    create_ca(cli)
    rc, out, err = cli("cert", "issue", EMAIL, "--send-pfx", "--generate-password",
                       "--sms-password")
    assert rc == 1
    assert f"no phone number for {EMAIL}" in err
    assert store.find_certificates(EMAIL) == []  # nothing issued
    assert store.list_queue() == []
