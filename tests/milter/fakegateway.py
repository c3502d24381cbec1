"""A small stand-in for smimegate.milter.gateway.Gateway, to test the daemon's glue alone.

Run as ``python -m tests.milter.fakegateway CONFIG [--socket SPEC]``: the real runner
(socket, privileges, signals, reload) with this gateway. What it does is chosen by the
recipients' local parts, so that one running milter covers every case:

- ``mandatory@...``  refused at RCPT with replies.reject_mandatory
- ``boom@...``       process() raises (the session's boundary must answer on_internal_error)
- ``rewrite@...``    the body is replaced by ``REPLACED\\r\\n`` + the original body
- ``split@...``      removed from this transaction and re-submitted as a Reinjection
- ``slowN@...``      process() sleeps N tenths of a second first (slow20@: 2 s), so that a
                     message is in flight when the test signals the process

Every message: each header starting with ``header_prefix`` is deleted (highest index of a
name first, as the real gateway does), ``{prefix}Seen`` is added with the envelope as the
session built it and the process id and reload count of the process that served it, and
``X-Top: 1`` is inserted at the top.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections.abc import Sequence

from smimegate import config as config_module
from smimegate.config import Config
from smimegate.milter import replies
from smimegate.milter.transaction import Envelope, HeaderEdit, Outcome, Reinjection
from smimegate.store.base import StoreUnavailable


class FakeGateway:
    """Deterministic decisions from the recipients' local parts (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.reloads = 0
        self.store: UnreachableStore | None = None

    @classmethod
    def create(cls, config: Config) -> FakeGateway:
        return cls(config)

    def reload(self, config: Config | None = None) -> None:
        self.reloads += 1
        if config is not None:
            self.config = config

    def close(self) -> None:
        """Nothing to release: the fake holds no store."""

    def rcpt_check(self, envelope_so_far: Envelope, recipient: str) -> replies.Reply:
        if recipient.startswith("mandatory@"):
            return replies.reject_mandatory(recipient)
        return replies.CONTINUE

    def process(
        self, envelope: Envelope, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Outcome:
        rcpts = envelope.recipients
        for r in rcpts:
            slow = re.match(r"slow([0-9]+)@", r)
            if slow:
                logging.getLogger("smimegate.fake").info(
                    f"{envelope.queue_id}: smimegate: fake slow start")
                time.sleep(int(slow.group(1)) / 10)
        if any(r.startswith("boom@") for r in rcpts):
            raise RuntimeError("boom: a bug in the gateway")
        prefix = self.config.milter.header_prefix
        edits: list[HeaderEdit] = []
        doomed: dict[str, list[int]] = {}
        seen: dict[str, int] = {}
        for name, _ in headers:
            seen[name.lower()] = seen.get(name.lower(), 0) + 1
            if name.lower().startswith(prefix.lower()):
                doomed.setdefault(name, []).append(seen[name.lower()])
        for name, indexes in doomed.items():
            for index in sorted(indexes, reverse=True):
                edits.append(HeaderEdit("delete", name, index))
        seen_value = (
            f"queue={envelope.queue_id} from={envelope.sender} rcpts={','.join(rcpts)} "
            f"auth={envelope.auth_authen} daemon={envelope.daemon_name} "
            f"client={envelope.client_addr} helo={envelope.helo} size={len(body)} "
            f"pid={os.getpid()} reloads={self.reloads}"
        )
        edits.append(HeaderEdit("add", f"{prefix}Seen", value=seen_value))
        edits.append(HeaderEdit("insert", "X-Top", value="1"))
        new_body = b"REPLACED\r\n" + body if any(r.startswith("rewrite@") for r in rcpts) else None
        split = tuple(r for r in rcpts if r.startswith("split@"))
        copies: tuple[Reinjection, ...] = ()
        if split:
            copies = (Reinjection(split, b"Subject: copy\r\n\r\ncopy for " + split[0].encode()
                                  + b"\r\n"),)
        return Outcome(
            reply=replies.CONTINUE,
            header_edits=tuple(edits),
            new_body=new_body,
            remove_recipients=split,
            reinjections=copies,
            log_line=f"{envelope.queue_id}: smimegate: fake result=ok",
        )


class UnreachableStore:
    """``--unreachable-store``: a store that went away after the supervisor's start-up check,
    so that every worker's reconnect (smimegate.milter.supervisor) fails."""

    def close(self) -> None:
        """Nothing is open."""

    def reconnect(self, pool_size: int) -> None:
        raise StoreUnavailable("postgresql://db.example/smimegate: connection refused")


def main(argv: Sequence[str] | None = None) -> int:
    from smimegate.milter import runner

    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--socket")
    parser.add_argument("--unreachable-store", action="store_true")
    args = parser.parse_args(argv)
    config = config_module.load(args.config)

    def make(config: Config) -> FakeGateway:
        gateway = FakeGateway.create(config)
        if args.unreachable_store:
            gateway.store = UnreachableStore()
        return gateway

    try:
        return runner.run(config, config_path=args.config, explicit=True,
                          socket_spec=args.socket, make_gateway=make)
    except runner.RunnerError as exc:  # as the CLI reports it: one line, exit 1
        print(f"smimegate: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
