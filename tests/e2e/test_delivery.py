"""PKCS#12 delivery end to end: `cert issue --send-pfx --sms-password` with Postfix's smtp-sink as
the relay and an HTTP SMS endpoint on loopback; the relay down first (the mail stays queued with
its error), `queue retry` once it is back; the received key.pfx opened with the password from the
SMS by cryptography and by `openssl pkcs12`. The password shows up nowhere else."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from smimegate.cli import main as main_mod
from smimegate.pki.passwords import ALPHABET
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from tests.helpers.ports import free_port
from tests.unit.delivery.servers import HttpBehaviour, http_server

pytestmark = pytest.mark.e2e

EMAIL = "carol@partner.test"
PHONE = "+31612345678"
TOKEN = "Bearer e2e-sms-token-93f1"

Cli = Callable[..., tuple[int, str, str]]


class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1:port, one file per message in folder."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        assert Path(sink).exists(), "smtp-sink (package postfix) is required"
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.proc = subprocess.Popen(
            [sink, "-u", user, "-d", f"{self.folder}/%Y%m%d%H%M%S.", f"127.0.0.1:{self.port}",
             "10"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("smtp-sink did not start listening")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.folder.iterdir())]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    folder = tmp_path / "sink"
    folder.mkdir()
    s = SmtpSink(free_port(), folder)
    yield s
    s.stop()


@pytest.fixture
def sms_endpoint() -> Iterator[tuple[str, HttpBehaviour]]:
    with http_server() as endpoint:
        yield endpoint


@pytest.fixture
def setup(tmp_path: Path, sink: SmtpSink, sms_endpoint: tuple[str, HttpBehaviour]
          ) -> tuple[Path, SqlStore]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    key = tmp_path / "master.key"
    ensure_master_key(key)
    store = SqlStore.open(url, key, create=True, check_schema=False)
    store.migrate()
    (tmp_path / "sms.auth").write_text(f"Authorization: {TOKEN}\n")
    config = tmp_path / "smimegate.toml"
    config.write_text(
        f'[store]\nurl = "{url}"\nmaster_key_file = "master.key"\n\n'
        f'[smtp]\nrelay = "127.0.0.1:{sink.port}"\nsender = "pki@gateway.test"\ntimeout = 10\n\n'
        '[milter]\nreinject_secret_file = "reinject.key"\n\n'
        f'[sms]\ntransport = "http"\nurl = "{sms_endpoint[0]}/api/sms"\n'
        'content_type = "application/json"\n'
        'body_template = \'{"to": "{phone}", "message": "{text}"}\'\n'
        'auth_header_file = "sms.auth"\n'
    )
    return config, store


@pytest.fixture
def cli(setup: tuple[Path, SqlStore], capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    outputs: list[str] = []

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main_mod.main(["-c", str(setup[0]), *argv])
        out, err = capsys.readouterr()
        outputs.append(out + err)
        return rc, out, err

    run.outputs = outputs  # type: ignore[attr-defined]
    yield run
    setup[1].close()


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def key_pfx(raw: bytes) -> bytes:
    (part,) = [p for p in parse(raw).iter_attachments() if p.get_filename() == "key.pfx"]
    assert part.get_content_type() == "application/x-pkcs12"
    content = part.get_content()
    assert isinstance(content, bytes)
    return content


def openssl_pkcs12(path: Path, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "pkcs12", "-in", str(path), "-passin", f"pass:{password}", "-nodes",
         "-info"], capture_output=True, text=True, timeout=60, check=False,
    )


def test_pfx_by_mail_password_by_sms_relay_down_then_retried(
    cli: Cli, setup: tuple[Path, SqlStore], sink: SmtpSink,
    sms_endpoint: tuple[str, HttpBehaviour], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="smimegate")
    _config, store = setup
    store.add_user(EMAIL, {"phone": PHONE})
    rc, out, err = cli("ca", "create", "--root-cn", "E2E Root", "--intermediate-cn", "E2E CA",
                       "--key-type", "ec-p256")
    assert rc == 0, err

    # The relay is down: the certificate is issued, the SMS goes, the mail waits in the queue.
    rc, out, err = cli("cert", "issue", EMAIL, "--send-pfx", "--sms-password",
                       "--generate-password")
    assert rc == 0, err
    assert "password SMS for carol@partner.test sent" in out
    assert "PKCS#12 mail for carol@partner.test queued as item" in out
    assert "password:" not in out

    (req,) = sms_endpoint[1].requests
    assert req.method == "POST" and req.path == "/api/sms"
    assert req.headers["Authorization"] == TOKEN
    assert req.headers["Content-Type"] == "application/json"
    sms = json.loads(req.body)
    assert sms["to"] == PHONE
    password = sms["message"].rsplit(": ", 1)[1]
    assert len(password) >= 16 and set(password) <= set(ALPHABET)

    rc, out, err = cli("queue", "list", "--json")
    assert rc == 0, err
    (item,) = json.loads(out)
    assert (item["kind"], item["recipient"], item["status"], item["attempts"]) == (
        "pfx-mail", EMAIL, "pending", 1)
    assert f"relay 127.0.0.1:{sink.port}" in item["last_error"]
    assert sink.messages() == []

    # The relay is back: `queue retry` delivers it.
    sink.start()
    rc, out, err = cli("queue", "retry", str(item["id"]))
    assert rc == 0, err
    assert "sent" in out
    rc, out, _ = cli("queue", "list", "--json")
    assert json.loads(out) == []

    (raw,) = sink.messages()
    assert b"X-Rcpt-Args: <carol@partner.test>" in raw
    assert b"X-Mail-Args: <pki@gateway.test>" in raw
    msg = parse(raw)
    assert msg["To"] == EMAIL
    body = msg.get_body(("plain",))
    assert body is not None and "text message (SMS)" in body.get_content()
    pfx = key_pfx(raw)
    key, cert, chain = pkcs12.load_key_and_certificates(pfx, password.encode())
    assert key is not None and cert is not None
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=E2E CA", "CN=E2E Root"]
    (tmp_path / "key.pfx").write_bytes(pfx)
    good = openssl_pkcs12(tmp_path / "key.pfx", password)
    assert good.returncode == 0, good.stderr
    assert "PRIVATE KEY" in good.stdout and EMAIL in good.stdout
    assert openssl_pkcs12(tmp_path / "key.pfx", "wrong" + password).returncode != 0

    # The password is in the SMS body and nowhere else: not in any output, log or the mail.
    everywhere = "\n".join(cli.outputs) + caplog.text  # type: ignore[attr-defined]
    assert password not in everywhere
    assert password.encode() not in raw
    assert TOKEN not in everywhere
    assert "result=sent" in caplog.text and "delivery deferred" in caplog.text


def test_without_sms_the_password_is_printed_once(
    cli: Cli, setup: tuple[Path, SqlStore], sink: SmtpSink, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="smimegate")
    sink.start()
    rc, _, err = cli("ca", "create", "--root-cn", "E2E Root", "--intermediate-cn", "E2E CA",
                     "--key-type", "ec-p256")
    assert rc == 0, err
    rc, out, err = cli("cert", "issue", EMAIL, "--send-pfx", "--generate-password",
                       "--pfx-profile", "legacy")
    assert rc == 0, err
    assert "PKCS#12 mail for carol@partner.test sent" in out
    (line,) = [line for line in out.splitlines() if line.startswith("password: ")]
    password = line.removeprefix("password: ")
    everywhere = "\n".join(cli.outputs) + caplog.text  # type: ignore[attr-defined]
    assert everywhere.count(password) == 1

    (raw,) = sink.messages()
    assert password.encode() not in raw
    body = parse(raw).get_body(("plain",))
    assert body is not None and "ask the person" in body.get_content()
    (tmp_path / "legacy.pfx").write_bytes(key_pfx(raw))
    opened = openssl_pkcs12(tmp_path / "legacy.pfx", password)
    assert opened.returncode == 0, opened.stderr
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in opened.stderr + opened.stdout
    assert setup[1].list_queue() == []
