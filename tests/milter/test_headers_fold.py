"""Folding of the header values we add (milter.headers.fold): unfolding as RFC 5322 2.2.3 says
(remove the line break only) gives back exactly the value, and the line break is the bare LF
that libmilter and Postfix's cleanup expect in an added value."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given, settings
from hypothesis import strategies as st

from smimegate.milter.edit import serialize_header
from smimegate.milter.headers import (
    FOLD_WIDTH,
    LINE_BREAK,
    authentication_results,
    encode_subject,
    fold,
    unfold,
)

NAME = "X-Smimegate-Info-Encryption-Recipient-0-0"
LONG_DNS = [
    "CN=Example Issuing CA, OU=Certification Authorities, O=Example Corporation Limited, C=DE",
    "CN=Example\tIssuing  CA,  O=Two  Spaces  Inc., L=Somewhere over the rainbow, ST=Far, C=US",
    "EMAILADDRESS=ca@example.com, CN=smimegate Test Root with a rather long common name, O=X",
]
TAIL = "/00D2A7C4E1F3B5968877665544332211/0011223344556677889900112233445566778899/1.2.840.113549.1.1.1"


def test_unfold_of_fold_gives_back_long_dns_exactly() -> None:
    for dn in LONG_DNS:
        value = dn + TAIL
        folded = fold(NAME, value)
        assert LINE_BREAK in folded, folded
        assert unfold(folded) == value
        # The WSP that was there starts the continuation: nothing added, nothing dropped.
        assert folded.replace(LINE_BREAK, "") == value
        assert "\r" not in folded


def test_break_goes_before_existing_space_and_keeps_it() -> None:
    value = "CN=Example Issuing CA, O=" + "x" * 60
    folded = fold("X-Smimegate-Info-Signer-ID-0-1", value)
    first, second = folded.split("\n")
    assert first == "CN=Example Issuing CA,"
    assert second == " O=" + "x" * 60
    # The regression the audit found: a tab in place of the space changed the DN.
    assert "\t" not in unfold(folded)


def test_no_white_space_no_break() -> None:
    value = "A" * 200
    assert fold(NAME, value) == value
    # Only leading or trailing white space: still nowhere to break without a WSP-only line.
    assert fold(NAME, " " + value + "  ") == " " + value + "  "


def test_short_values_stay_on_one_line() -> None:
    value = "x" * (FOLD_WIDTH - len("Subject: "))
    assert fold("Subject", value) == value
    assert "\n" in fold("Subject", value + " y")


def test_already_folded_input_is_refolded_the_same() -> None:
    value = LONG_DNS[0] + TAIL
    assert fold(NAME, fold(NAME, value)) == fold(NAME, value)
    # Postfix's own fold form ("\n\t") unfolds to the same value too.
    assert unfold("CN=a,\n\tO=b") == "CN=a,\tO=b"


def test_python_email_reads_the_written_field_back_exactly() -> None:
    for dn in LONG_DNS:
        value = dn + TAIL
        raw = serialize_header(NAME, fold(NAME, value)) + b"\r\n"
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert str(parsed[NAME]) == value
        # Every written line ends in CRLF and none holds only white space (RFC 5322 3.2.2).
        lines = raw.split(b"\r\n")[:-2]
        assert all(line.strip(b" \t") for line in lines), lines
        assert b"\r" not in b"".join(lines) and b"\n" not in b"".join(lines)


def test_authentication_results_and_subject_use_lf_only() -> None:
    ar = authentication_results("mx.example", [
        'smime=neutral reason="unable to get local issuer certificate" '
        'body.smime-identifier=someone@example.com body.smime-serial=0123456789ABCDEF',
        'smime=pass body.smime-issuer="CN=Example Issuing CA, O=Example Corporation"'])
    assert "\n" in ar and "\r" not in ar
    assert unfold(ar).count("; ") == 2
    subject = encode_subject("Grüße aus München, mit einem Betreff, der lang genug zum Falten ist")
    assert "\n" in subject and "\r" not in subject
    parsed = email.message_from_bytes(serialize_header("Subject", subject) + b"\r\n",
                                      policy=email.policy.default)
    assert str(parsed["Subject"]) == "Grüße aus München, mit einem Betreff, der lang genug zum Falten ist"


_TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ=,;/.-0123456789 \t")), max_size=400)


def _may_break_before(value: str, i: int) -> bool:
    """RFC 5322 folding point: a WSP after a non-WSP, with a non-WSP somewhere after it."""
    return (0 < i and value[i] in " \t" and value[i - 1] not in " \t"
            and value[i:].strip(" \t") != "")


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["Subject", NAME, "X-A"]), value=_TEXT)
def test_fold_properties(name: str, value: str) -> None:
    folded = fold(name, value)
    assert unfold(folded) == value
    assert folded.replace(LINE_BREAK, "") == value
    lines = folded.split(LINE_BREAK)
    offset = 0
    for index, line in enumerate(lines):
        if len(lines) > 1:
            assert line.strip(" \t"), lines  # no line of only WSP (RFC 5322 3.2.2)
        if index:
            assert line[0] in " \t"
        width = len(line) + (len(name) + 2 if index == 0 else 0)
        if width > FOLD_WIDTH:
            # Over-long only when the line had no point to break at before it grew too long.
            first_fit_end = offset + len(line) - (width - FOLD_WIDTH)
            assert not any(_may_break_before(value, i)
                           for i in range(offset + 1, first_fit_end + 1)), (lines, index)
        offset += len(line)
