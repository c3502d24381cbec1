"""What the command line shows of log records and Python warnings (issue 9).

A command's result is its output; what libraries log on the way (pyhanko-certvalidator about
a CRL it cannot use, ldap3, cryptography's deprecations) is not, and a traceback is never an
answer to a user. So, without ``--debug``:

- log records at WARNING and above, ours and the libraries', are one line each on stderr,
  each distinct line once, ``smimegate: warning: TEXT`` (a line of ours that already starts ``smimegate:`` as
  smimegate.log.warning_line writes it is shown as it is); the traceback a record carries
  (``exc_info``) and any further lines of its text are left out;
- Python warnings go the same way, except deprecation warnings, which are for developers:
  those are not shown;
- records below WARNING are not shown.

With ``--debug`` everything is shown: records from DEBUG up with their logger name and
traceback, and every Python warning with its source line.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TextIO

TAG = "smimegate"
HANDLER_NAME = "smimegate-cli"


class OneLine(logging.Formatter):
    """``smimegate: warning: TEXT``: the first line of a record's text, no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        lines = record.getMessage().strip().splitlines()
        text = lines[0] if lines else ""
        if text.startswith(f"{TAG}: ") or f": {TAG}: " in text:
            return text  # already one of our lines (QUEUEID: smimegate: ...)
        level = "error" if record.levelno >= logging.ERROR else "warning"
        return f"{TAG}: {level}: {text}"


class _Stderr(logging.Handler):
    """Writes to sys.stderr as it is when a record comes (pytest's capsys replaces it).
    ``once``: a line already written is not written again (a library that meets the same
    bad CRL for every signer says so once)."""

    def __init__(self, stream: TextIO | None, *, once: bool) -> None:
        super().__init__()
        self._stream = stream
        self._once = once
        self._seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self._once:
                if line in self._seen:
                    return
                self._seen.add(line)
            stream = self._stream or sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            self.handleError(record)


def _is_deprecation(category: type[Warning]) -> bool:
    # cryptography's CryptographyDeprecationWarning subclasses UserWarning, not
    # DeprecationWarning, so the name decides as well as the class.
    return issubclass(category, DeprecationWarning | PendingDeprecationWarning) or (
        category.__name__.endswith("DeprecationWarning")
    )


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """warnings.showwarning without --debug: one line through the logging handler."""
    if _is_deprecation(category):
        return
    logging.getLogger("py.warnings").warning("%s", message)


def setup(*, debug: bool, stream: TextIO | None = None) -> None:
    """Install the command line's handler on the root logger and route Python warnings.

    ``stream`` replaces sys.stderr (tests). Calling it again replaces what it installed.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == HANDLER_NAME:
            root.removeHandler(old)
    handler = _Stderr(stream, once=not debug)
    handler.set_name(HANDLER_NAME)
    if debug:
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        root.setLevel(logging.DEBUG)
        warnings.showwarning = _ORIGINAL_SHOW
        warnings.simplefilter("default")  # every warning once per place, deprecations too
    else:
        handler.setFormatter(OneLine())
        root.setLevel(logging.WARNING)
        warnings.showwarning = _show_warning
    root.addHandler(handler)


_ORIGINAL_SHOW = warnings.showwarning
