"""Apply an Outcome's header edits and body to a raw message, as the MTA would.

Used by ``smimegate message process`` (which has no MTA to do it), by the gateway to build the
copies it re-submits, and by tests to predict what Postfix delivers. Header semantics follow
libmilter's smfi_chgheader / smfi_addheader / smfi_insheader: a change or delete names the
index-th field of that name (1-based, case-insensitive) as the header stands at that point; a
change or delete of a missing field does nothing; add appends; insert puts the field first.
"""

from __future__ import annotations

from collections.abc import Sequence

from smimegate.milter.transaction import HeaderEdit, Outcome


def _line_ends(value: str) -> bytes:
    """A field value with every line end as CRLF (Postfix joins folds with "\\n\\t")."""
    data = value.encode("utf-8", "surrogateescape")
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def serialize_header(name: str, value: str) -> bytes:
    """``Name: value`` CRLF, folds kept (with CRLF line ends)."""
    return name.encode("ascii", "replace") + b": " + _line_ends(value) + b"\r\n"


def apply_header_edits(
    headers: Sequence[tuple[str, str]], edits: Sequence[HeaderEdit]
) -> list[tuple[str, str]]:
    """The header list after the edits, in order (see the module docstring). Never raises."""
    out = list(headers)
    for edit in edits:
        if edit.op == "add":
            out.append((edit.name, edit.value or ""))
            continue
        if edit.op == "insert":
            out.insert(0, (edit.name, edit.value or ""))
            continue
        seen = 0
        for position, (name, _value) in enumerate(out):
            if name.lower() != edit.name.lower():
                continue
            seen += 1
            if seen == edit.index:
                if edit.op == "delete":
                    del out[position]
                else:
                    out[position] = (name, edit.value or "")
                break
    return out


def build_message(headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    """Header fields, the empty line, then the body as given."""
    return b"".join(serialize_header(n, v) for n, v in headers) + b"\r\n" + body


def apply_outcome_to_message(
    headers: Sequence[tuple[str, str]], body: bytes, outcome: Outcome
) -> bytes:
    """The message as the MTA delivers it after applying ``outcome`` (edits, then new body).

    ``headers`` as the MTA passed them to the milter (name, value without the space after the
    colon); ``body`` raw with CRLF line ends. Never raises.
    """
    edited = apply_header_edits(headers, outcome.header_edits)
    return build_message(edited, outcome.new_body if outcome.new_body is not None else body)
