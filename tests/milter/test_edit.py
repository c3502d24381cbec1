"""apply_outcome_to_message applies header edits as libmilter / Postfix do."""

from __future__ import annotations

from smimegate.milter import replies
from smimegate.milter.edit import apply_header_edits, apply_outcome_to_message
from smimegate.milter.transaction import HeaderEdit, Outcome

HEADERS = [("Received", "from a"), ("Subject", "hi"), ("received", "from b"),
           ("X-Folded", "one\n\ttwo")]


def test_delete_change_add_insert() -> None:
    edits = (
        HeaderEdit("delete", "Received", 2),
        HeaderEdit("delete", "Received", 1),
        HeaderEdit("change", "SUBJECT", 1, "new"),
        HeaderEdit("add", "X-A", 1, "a"),
        HeaderEdit("insert", "Authentication-Results", 1, "mx; smime=pass"),
        HeaderEdit("delete", "Missing", 1),
    )
    assert apply_header_edits(HEADERS, edits) == [
        ("Authentication-Results", "mx; smime=pass"), ("Subject", "new"),
        ("X-Folded", "one\n\ttwo"), ("X-A", "a")]


def test_message_bytes() -> None:
    outcome = Outcome(replies.CONTINUE, (HeaderEdit("add", "X-B", 1, "long\r\n\tvalue"),),
                      new_body=b"new body\r\n")
    raw = apply_outcome_to_message(HEADERS, b"old\r\n", outcome)
    assert raw == (b"Received: from a\r\nSubject: hi\r\nreceived: from b\r\n"
                   b"X-Folded: one\r\n\ttwo\r\nX-B: long\r\n\tvalue\r\n\r\nnew body\r\n")
    assert apply_outcome_to_message(HEADERS, b"old\r\n", Outcome(replies.CONTINUE)).endswith(
        b"\r\n\r\nold\r\n")
