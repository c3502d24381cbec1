"""PkiError on its own, so that catching it (smimegate.cli.context) does not import the CA."""

from __future__ import annotations


class PkiError(Exception):
    """The CA operation cannot be done; the message says why in one line."""
