"""A trivial pymilter milter for validating the MTA harness (tests/e2e/mta.py) on its own.

It changes nothing but adds ``X-Noop-Milter: QUEUEID DAEMON_NAME`` at end of message, so a
test can see that the MTA passed the message through a milter and which macros arrived.
Usage: python noop_milter.py SOCKET (libmilter syntax, inet:PORT@HOST or unix:/PATH).
"""

from __future__ import annotations

import os
import sys

import Milter


class Noop(Milter.Base):  # type: ignore[misc]
    def __init__(self) -> None:
        self.daemon_name = ""

    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.daemon_name = self.getsymval("{daemon_name}") or ""
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        queue_id = self.getsymval("i") or "NOQUEUE"
        self.addheader("X-Noop-Milter", f"{queue_id} {self.daemon_name or '-'}")
        return int(Milter.ACCEPT)


def main() -> None:
    # A unix: socket must be writable by user postfix (INTEROP.md); this is a test milter.
    os.umask(0)
    Milter.factory = Noop
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("noop", sys.argv[1], timeout=60)


if __name__ == "__main__":
    main()
