"""SMS transports against real receivers: an HTTP endpoint on loopback, a program that records
its argv, a file that is appended to."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import urllib.parse
from pathlib import Path

import pytest

from smimegate.config import SmsConfig
from smimegate.delivery import DeliveryError
from smimegate.delivery.sms import command_argv, render_body, send_sms, sms_text
from tests.helpers.ports import free_port
from tests.unit.delivery.conftest import EMAIL, PASSWORD, PHONE
from tests.unit.delivery.servers import HttpBehaviour, http_server

TEXT = sms_text(EMAIL, PASSWORD)
TOKEN = "Bearer s3cr3t-api-token"


def test_text_holds_the_password_and_fits_one_sms() -> None:
    assert TEXT.endswith(f": {PASSWORD}")
    assert EMAIL in TEXT
    assert len(TEXT) <= 160  # one GSM 03.38 SMS


def test_form_body_is_url_encoded() -> None:
    body = render_body("to={phone}&text={text}", "application/x-www-form-urlencoded",
                       "+49 176", "a&b=c d+e")
    assert body == b"to=%2B49+176&text=a%26b%3Dc+d%2Be"
    assert urllib.parse.parse_qs(body.decode()) == {"to": ["+49 176"], "text": ["a&b=c d+e"]}


def test_json_body_escapes_strings() -> None:
    body = render_body('{"to": "{phone}", "msg": "{text}"}', "application/json; charset=utf-8",
                       PHONE, 'say "hi"\\ {phone} ü')
    assert json.loads(body) == {"to": PHONE, "msg": 'say "hi"\\ {phone} ü'}


def test_json_template_that_is_not_json_is_an_error() -> None:
    with pytest.raises(DeliveryError, match="valid JSON") as info:
        render_body('{"to": {phone}}', "application/json", PHONE, TEXT)
    assert PASSWORD not in str(info.value)


def test_other_types_take_the_values_as_they_are() -> None:
    assert render_body("{phone} {text}", "text/plain", PHONE, "a&b") == f"{PHONE} a&b".encode()


def http_config(url: str, tmp_path: Path, **changes: object) -> SmsConfig:
    auth = tmp_path / "sms-auth"
    auth.write_text(f"Authorization: {TOKEN}\n")
    return dataclasses.replace(SmsConfig(), url=url, auth_header_file=str(auth), timeout=5.0,
                               **changes)  # type: ignore[arg-type]


def test_http_posts_the_body_with_the_auth_header(tmp_path: Path) -> None:
    with http_server() as (base, endpoint):
        send_sms(http_config(f"{base}/api/send", tmp_path), PHONE, TEXT)
    (req,) = endpoint.requests
    assert req.method == "POST"
    assert req.path == "/api/send"
    assert req.headers["Authorization"] == TOKEN
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(req.body.decode()) == {"to": [PHONE], "text": [TEXT]}


def test_http_json_put(tmp_path: Path) -> None:
    with http_server() as (base, endpoint):
        config = http_config(f"{base}/v2/sms", tmp_path, method="PUT",
                             content_type="application/json",
                             body_template='{"recipient": "{phone}", "body": "{text}"}')
        send_sms(config, PHONE, TEXT)
    (req,) = endpoint.requests
    assert req.method == "PUT"
    assert json.loads(req.body) == {"recipient": PHONE, "body": TEXT}


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (503, False), (429, False),
                                                   (400, True), (401, True)])
def test_http_errors_name_the_status_but_no_secret(
    tmp_path: Path, status: int, permanent: bool
) -> None:
    with http_server(HttpBehaviour(status=status)) as (base, _), \
            pytest.raises(DeliveryError) as info:
        send_sms(http_config(f"{base}/send?apikey=k3y", tmp_path), PHONE, TEXT)
    message = str(info.value)
    assert f"HTTP {status}" in message
    assert info.value.permanent is permanent
    for secret in (PASSWORD, TOKEN, "s3cr3t", "k3y"):  # the endpoint echoed the body
        assert secret not in message


def test_http_endpoint_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/send"
    with pytest.raises(DeliveryError, match="refused") as info:
        send_sms(http_config(url, tmp_path), PHONE, TEXT)
    assert not info.value.permanent


@pytest.mark.parametrize("content", ["no colon here", "Authorization:", "A: b\nC: d", ""])
def test_malformed_auth_header_file(tmp_path: Path, content: str) -> None:
    config = http_config("http://127.0.0.1:9/x", tmp_path)
    Path(config.auth_header_file).write_text(content)
    with pytest.raises(DeliveryError, match="auth_header_file") as info:
        send_sms(config, PHONE, TEXT)
    assert content.strip() == "" or content.splitlines()[0] not in str(info.value)


RECORDER = """#!/bin/sh
# Record the argv, one argument per line, as an SMS gateway's command-line client would get it.
out="$(dirname "$0")/argv.txt"
: > "$out"
for a in "$@"; do printf '%s\\n' "$a" >> "$out"; done
"""


def recorder(tmp_path: Path, script: str = RECORDER) -> Path:
    path = tmp_path / "send-sms"
    path.write_text(script)
    path.chmod(0o755)
    return path


def test_command_gets_phone_and_text_as_arguments(tmp_path: Path) -> None:
    prog = recorder(tmp_path)
    config = dataclasses.replace(SmsConfig(), transport="command",
                                 command=(str(prog), "--to", "{phone}", "--message={text}"))
    send_sms(config, PHONE, TEXT)
    assert (tmp_path / "argv.txt").read_text().splitlines() == [
        "--to", PHONE, f"--message={TEXT}"]


def test_command_without_placeholders_gets_them_appended(tmp_path: Path) -> None:
    prog = recorder(tmp_path)
    config = dataclasses.replace(SmsConfig(), transport="command", command=(str(prog), "-q"))
    send_sms(config, PHONE, "text; rm -rf / $(id)")  # no shell: nothing is interpreted
    assert (tmp_path / "argv.txt").read_text().splitlines() == ["-q", PHONE,
                                                                "text; rm -rf / $(id)"]
    assert command_argv(("x",), "p", "t") == ["x", "p", "t"]


def test_command_failure_reports_status_without_the_text(tmp_path: Path) -> None:
    prog = recorder(tmp_path, '#!/bin/sh\necho "cannot send $2 to $1" >&2\nexit 3\n')
    config = dataclasses.replace(SmsConfig(), transport="command", command=(str(prog),))
    with pytest.raises(DeliveryError, match="exited with status 3") as info:
        send_sms(config, PHONE, TEXT)
    assert "cannot send [redacted] to [redacted]" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_command_missing(tmp_path: Path) -> None:
    config = dataclasses.replace(SmsConfig(), transport="command",
                                 command=(str(tmp_path / "absent"),))
    with pytest.raises(DeliveryError, match="absent"):
        send_sms(config, PHONE, TEXT)


def test_file_transport_appends_lines(tmp_path: Path) -> None:
    out = tmp_path / "sms.log"
    config = dataclasses.replace(SmsConfig(), transport="file", file=str(out))
    send_sms(config, PHONE, TEXT)
    send_sms(config, "+15550100", "second\nmessage")
    lines = out.read_text().splitlines()
    assert [line.split("\t")[1:] for line in lines] == [[PHONE, TEXT],
                                                       ["+15550100", "second message"]]
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
