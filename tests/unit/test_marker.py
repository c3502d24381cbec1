"""smimegate.marker: the HMAC marker shared by split copies and our own PKCS#12 mail."""

from __future__ import annotations

import time

import pytest

from smimegate import marker
from smimegate.milter import reinject

SECRET = b"k" * 32


def test_reinject_keeps_its_names() -> None:
    # smimegate.milter.reinject re-exports the marker it used to define.
    assert reinject.make_marker is marker.make_marker
    assert reinject.MARKER_HEADER == marker.MARKER_HEADER == "X-Smimegate-Reinjected"


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_mark_message_covers_the_body_for_those_recipients(eol: bytes) -> None:
    message = eol.join([b"From: a@x.test", b"Subject: s", b"", b"line 1", b"", b"line 3", b""])
    marked = marker.mark_message(SECRET, "PFXMAIL", ["B@y.test"], message)
    first, rest = marked.split(eol, 1)
    assert rest == message
    name, value = first.decode().split(": ", 1)
    assert name == marker.MARKER_HEADER and value.startswith("v=1; q=PFXMAIL; t=")
    head, body = marker.split_message(marked)
    assert body == eol.join([b"line 1", b"", b"line 3", b""])
    assert marker.check_marker(SECRET, value, ["b@y.test"], body.replace(eol, b"\r\n")).valid
    assert not marker.check_marker(SECRET, value, ["c@y.test"], body).valid
    assert not marker.check_marker(SECRET, value, ["b@y.test"], body + b"x").valid
    assert not marker.check_marker(b"other" * 8, value, ["b@y.test"], body).valid
    stale = time.time() + marker.MAX_AGE + 60
    assert marker.check_marker(SECRET, value, ["b@y.test"], body, now=stale).reason == \
        "stale marker"


def test_split_message_without_body() -> None:
    assert marker.split_message(b"Subject: x\r\n") == (b"Subject: x\r\n", b"")
