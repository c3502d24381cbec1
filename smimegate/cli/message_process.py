"""``smimegate message process FILE --sender ADDR --recipient ADDR...``: the milter offline.

Runs Gateway.process (the same decisions and rewriting as the milter) on FILE with the store
and configuration of the -c/--config file, and applies the outcome as the MTA would
(smimegate.milter.edit). The message goes to --out or stdout; re-submitted copies of a split
go to --out.N (or are listed on stderr when writing to stdout); the reply and the log line go
to stderr. Without --authenticated or a --client-ip in trusted_networks, the client counts as
an outside one (so mail "from" an internal user is not signed), as the milter would see it.

Exit codes: 0 the message was accepted; 1 the reply refuses it (reject or tempfail; printed),
or FILE cannot be read; 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from smimegate.cli.common import OperationFailed
from smimegate.cli.context import read_input, write_output
from smimegate.milter.edit import apply_outcome_to_message
from smimegate.milter.transaction import Envelope

# Counts as an outside client unless --client-ip or --authenticated say otherwise
# (TEST-NET-2, RFC 5737: never a real client).
OUTSIDE_CLIENT = "198.51.100.1"


def register(sub: Any) -> None:
    """Add ``process`` to the ``message`` subcommands."""
    process = sub.add_parser(
        "process",
        help="run the gateway on a message offline",
        description="Run the gateway on FILE: the same decisions and rewriting as the milter. "
        "The message goes to --out (or stdout), the reply and log line to stderr.",
    )
    process.add_argument("file", metavar="FILE", help="the message (- for standard input)")
    process.add_argument("--sender", required=True, metavar="ADDR",
                         help='envelope sender (MAIL FROM); "" for the null sender')
    process.add_argument("--recipient", action="append", required=True, metavar="ADDR",
                         help="envelope recipient (RCPT TO); repeatable")
    process.add_argument("--authenticated", action="store_true",
                         help="the client authenticated with SMTP AUTH (as the sender)")
    process.add_argument("--client-ip", metavar="IP", default=OUTSIDE_CLIENT,
                         help=f"client address (default {OUTSIDE_CLIENT}, an outside one)")
    process.add_argument("--queue-id", default="OFFLINE", metavar="ID",
                         help="queue id for the log line (default OFFLINE)")
    process.add_argument("--out", metavar="FILE", help="write the message here, not stdout")
    process.set_defaults(func=cmd_process)


def split_headers(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """(headers as an MTA passes them to a milter: name, value without the blank after the
    colon, folds joined with "\\n"), body with CRLF line ends)."""
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, _sep, body = data.partition(b"\r\n\r\n")
    headers: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value}\n{line}")
        elif ":" in line:
            name, _colon, value = line.partition(":")
            headers.append((name.strip(), value.lstrip(" \t")))
        else:
            raise OperationFailed(f"not a header line: {line[:60]!r}")
    return headers, body


def cmd_process(args: argparse.Namespace) -> int:
    """Handler of ``message process``; exit 0 accepted, 1 refused (see the module docstring)."""
    from smimegate.cli.config import load_from_args
    from smimegate.milter.gateway import Gateway
    from smimegate.store import StoreError

    config = load_from_args(args)
    headers, body = split_headers(read_input(args.file))
    try:
        gateway = Gateway.create(config)
    except (StoreError, OSError) as exc:
        raise OperationFailed(str(exc)) from None
    try:
        recipients = tuple(args.recipient)
        envelope = Envelope(
            queue_id=args.queue_id, sender=args.sender, recipients=recipients,
            client_addr=args.client_ip, client_name=None, helo=None,
            auth_authen=args.sender if args.authenticated else None, daemon_name=None,
        )
        for rcpt in recipients:
            early = gateway.rcpt_check(envelope, rcpt)
            if early.refuses:
                print(f"smimegate: RCPT TO:<{rcpt}>: {early.line()}", file=sys.stderr)
                return 1
        outcome = gateway.process(envelope, headers, body)
    finally:
        gateway.store.close()
    print(outcome.log_line, file=sys.stderr)
    if outcome.reply.refuses:
        print(f"smimegate: {outcome.reply.line()}", file=sys.stderr)
        return 1
    message = apply_outcome_to_message(headers, body, outcome)
    if args.out:
        write_output(args.out, message)
        for number, copy in enumerate(outcome.reinjections, 1):
            write_output(f"{args.out}.{number}", copy.message)
            print(f"smimegate: copy for {', '.join(copy.recipients)} in {args.out}.{number}",
                  file=sys.stderr)
    else:
        write_output("-", message)
        for copy in outcome.reinjections:
            print(f"smimegate: a separate copy goes to {', '.join(copy.recipients)} "
                  "(use --out to keep it)", file=sys.stderr)
    print(f"smimegate: {outcome.reply.line()}", file=sys.stderr)
    return 0
