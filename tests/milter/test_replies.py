"""Every SMTP reply constant is well-formed (DESIGN.md Style 8, after aiosmtpd statuscodes)."""

from __future__ import annotations

import pytest

from smimegate.milter import replies


@pytest.mark.parametrize("reply", replies.ALL + (replies.reject_mandatory("a" * 600 + "@x"),
                                                 replies.reject_policy("<b@y>: refused")),
                         ids=lambda r: r.line()[:30])
def test_reply_constant_is_well_formed(reply: replies.Reply) -> None:
    if reply.kind in ("tempfail", "reject"):
        assert reply.code is not None and reply.xcode is not None and reply.text
        # RFC 3463 2: the class of the enhanced code matches the reply code's first digit.
        assert reply.code[0] == reply.xcode[0] == ("4" if reply.kind == "tempfail" else "5")
        assert len(reply.xcode.split(".")) == 3
        # RFC 5321 4.5.3.1.5: 512 octets per reply line, CRLF included.
        assert len(reply.line().encode()) + 2 <= 512
    else:
        assert reply.code is None and reply.xcode is None


def test_mandatory_names_the_address() -> None:
    reply = replies.reject_mandatory("bob@example.org")
    assert reply.line() == ("550 5.7.1 encryption required for <bob@example.org> but no usable "
                            "certificate")


def test_bad_replies_are_refused() -> None:
    with pytest.raises(ValueError, match="4yz"):
        replies.Reply("tempfail", "550", "4.7.1", "x")
    with pytest.raises(ValueError, match="does not match"):
        replies.Reply("reject", "550", "4.7.1", "x")
    with pytest.raises(ValueError, match="512"):
        replies.Reply("reject", "550", "5.7.1", "x" * 600)
    with pytest.raises(ValueError, match="no code"):
        replies.Reply("continue", "250")
