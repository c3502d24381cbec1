"""SMS transports for PKCS#12 passwords: ``http``, ``command`` and ``file`` (``[sms]``).

- http: a POST (or PUT) to ``url`` whose body is ``body_template`` with ``{phone}`` and
  ``{text}`` replaced, escaped for ``content_type``: form-encoded for
  application/x-www-form-urlencoded, JSON string contents for application/json (and ``+json``
  types; the template puts the quotes, ``{"to": "{phone}", "text": "{text}"}``), as they are
  otherwise. ``auth_header_file`` may hold one ``Name: value`` header line to add.
- command: ``command`` run without a shell, ``{phone}`` and ``{text}`` replaced inside its
  arguments, or both appended when no argument names them. Note that arguments are visible to
  other local users in the process list.
- file: one line ``TIME<TAB>PHONE<TAB>TEXT`` appended to ``file`` (mode 0600), for tests.

The text carries the password: it never reaches an error message or the log.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from smimegate.config import SmsConfig
from smimegate.delivery.errors import DeliveryError, redact

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.1 token


def sms_text(email: str, password: str) -> str:
    """The message: short enough for one SMS with a 20-character password and a usual address.

    The password stands last and alone after ": " so that it is easy to read off a phone.
    """
    return f"Password for the certificate file key.pfx mailed to {email}: {password}"


def send_sms(config: SmsConfig, phone: str, text: str) -> None:
    """Send text to phone through the configured transport.

    Raises DeliveryError (permanent for HTTP 4xx statuses other than 408 and 429) whose message
    leaves out the text and any authentication header.
    """
    if config.transport == "http":
        _send_http(config, phone, text)
    elif config.transport == "command":
        _send_command(config, phone, text)
    else:
        _send_file(config, phone, text)


def is_json_type(content_type: str) -> bool:
    """Whether a Content-Type is JSON (application/json or a ``+json`` suffix, RFC 6839)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def render_body(template: str, content_type: str, phone: str, text: str) -> bytes:
    """body_template with the placeholders replaced and escaped for content_type (UTF-8).

    Raises DeliveryError when a JSON template does not give valid JSON.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if is_json_type(content_type):
        def escape(value: str) -> str:
            return json.dumps(value, ensure_ascii=False)[1:-1]
    elif media == "application/x-www-form-urlencoded":
        def escape(value: str) -> str:
            return urllib.parse.quote_plus(value)
    else:
        def escape(value: str) -> str:
            return value
    # One pass, so that a "{text}" inside the phone number (or the other way round) stays.
    body = re.sub(
        r"\{(phone|text)\}", lambda m: escape(phone if m.group(1) == "phone" else text), template
    )
    if is_json_type(content_type):
        try:
            json.loads(body)
        except ValueError:
            raise DeliveryError(
                "[sms] body_template does not give valid JSON (quote the placeholders: "
                '"{text}")'
            ) from None
    return body.encode("utf-8")


def read_auth_header(path: str) -> tuple[str, str]:
    """The ``Name: value`` header held by the file at path.

    Raises DeliveryError naming the file, never its content, when it cannot be read or does not
    hold one header line.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
        raise DeliveryError(f"[sms] auth_header_file {path}: {reason}") from None
    name, sep, value = lines[0].partition(":") if len(lines) == 1 else ("", "", "")
    if not sep or not _HEADER_NAME.fullmatch(name.strip()) or not value.strip():
        raise DeliveryError(f'[sms] auth_header_file {path}: expected one line "Name: value"')
    return name.strip(), value.strip()


def _send_http(config: SmsConfig, phone: str, text: str) -> None:
    body = render_body(config.body_template, config.content_type, phone, text)
    headers = {"Content-Type": config.content_type, "User-Agent": "smimegate"}
    if config.auth_header_file:
        name, value = read_auth_header(config.auth_header_file)
        headers[name] = value
    request = urllib.request.Request(config.url, data=body, headers=headers, method=config.method)
    where = f"SMS gateway {safe_url(config.url)}"
    try:
        with urllib.request.urlopen(request, timeout=config.timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        # The response body is not quoted: a gateway may echo the request, password included.
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 429)
        raise DeliveryError(f"{where}: HTTP {exc.code} {_one_line(str(exc.reason))}",
                            permanent=permanent) from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"{where}: {_one_line(str(exc.reason))}") from None
    except TimeoutError:
        raise DeliveryError(f"{where}: timed out after {config.timeout:g}s") from None
    except OSError as exc:
        raise DeliveryError(f"{where}: {_one_line(exc.strerror or str(exc))}") from None


def safe_url(url: str) -> str:
    """The URL without its query and user info, which may hold an API key."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def command_argv(command: tuple[str, ...], phone: str, text: str) -> list[str]:
    """The argv of the command transport: placeholders replaced in each argument; without any
    placeholder, phone and text are appended as the last two arguments."""
    if not any("{phone}" in a or "{text}" in a for a in command):
        return [*command, phone, text]
    return [
        re.sub(r"\{(phone|text)\}", lambda m: phone if m.group(1) == "phone" else text, a)
        for a in command
    ]


def _send_command(config: SmsConfig, phone: str, text: str) -> None:
    argv = command_argv(config.command, phone, text)
    where = f"SMS command {config.command[0]}"
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=config.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DeliveryError(f"{where}: timed out after {config.timeout:g}s") from None
    except OSError as exc:
        raise DeliveryError(f"{where}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        said = redact(proc.stderr.decode("utf-8", "replace"), (text, phone)).strip()
        last = _one_line(said.splitlines()[-1]) if said else ""
        status = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                  else f"exited with status {proc.returncode}")
        raise DeliveryError(f"{where}: {status}" + (f": {last}" if last else ""))


def _send_file(config: SmsConfig, phone: str, text: str) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = "\t".join(" ".join(v.split()) for v in (stamp, phone, text)) + "\n"
    try:
        fd = os.open(config.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            # Two workers may append at once; one write under a lock keeps lines whole.
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise DeliveryError(f"SMS file {config.file}: {exc.strerror or exc}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
