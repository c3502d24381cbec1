"""``smimegate queue``: the delivery queue (PKCS#12 mails, password SMS).

    smimegate queue list [--status pending|running|failed] [--json]
    smimegate queue retry ID          claim the item and try it now; exit 1 with the error if it
                                      fails again or a worker is sending it
    smimegate queue delete ID
    smimegate queue run [--max N]     send what is due (for cron or a systemd timer)

Listings show who an item is for and how it fares, never its payload (the PKCS#12, the SMS
text with its password).
"""

from __future__ import annotations

import argparse
from typing import Any

from smimegate.cli.common import OperationFailed, UsageError, print_json
from smimegate.cli.context import open_store
from smimegate.delivery.queue import run_due
from smimegate.service import queues
from smimegate.service.actor import cli_actor

STATUSES = queues.STATUSES


def _item_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a queue item id: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a queue item id: {text!r}")
    return value


def register(sub: Any) -> None:
    parser = sub.add_parser("queue", help="list, retry and delete queued deliveries")
    commands = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)

    lst = commands.add_parser("list", help="list queued deliveries")
    lst.add_argument("--status", choices=STATUSES, help="only items with this status")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    retry = commands.add_parser("retry", help="try a queued delivery now")
    retry.add_argument("id", type=_item_id, metavar="ID")
    retry.set_defaults(func=_retry)

    delete = commands.add_parser("delete", help="remove a queued delivery")
    delete.add_argument("id", type=_item_id, metavar="ID")
    delete.set_defaults(func=_delete)

    run = commands.add_parser("run", help="send the deliveries that are due")
    run.add_argument("--max", type=int, default=100, metavar="N",
                     help="send at most N items (default 100)")
    run.set_defaults(func=_run)


_row = queues.row  # moved to the service layer


def _list(args: argparse.Namespace) -> int:
    with open_store(args, keys=True) as ctx:
        rows = queues.listing(ctx.store, args.status)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("queue is empty")
        return 0
    head = ("ID", "KIND", "RECIPIENT", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR")
    table = [head] + [
        (str(r["id"]), str(r["kind"]), str(r["recipient"]) or "?", str(r["status"]),
         str(r["attempts"]), str(r["next_attempt"] or "-"), str(r["last_error"] or "-"))
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(head) - 1)]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1])
    return 0


def _retry(args: argparse.Namespace) -> int:
    with open_store(args, keys=True) as ctx:
        outcome = queues.retry(ctx.store, ctx.config, cli_actor(), args.id)
    if not outcome.sent:
        then = (f"next attempt {outcome.retry_at.isoformat(timespec='seconds')}"
                if outcome.retry_at else "given up")
        raise OperationFailed(f"queue item {outcome.item_id}: {outcome.error} ({then})")
    print(f"queue item {outcome.item_id} ({outcome.kind} for {outcome.recipient}) sent")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with open_store(args, keys=True) as ctx:
        queues.delete(ctx.store, ctx.config, cli_actor(), args.id)
    print(f"queue item {args.id} deleted")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.max < 1:
        raise UsageError("queue run --max: must be at least 1")
    with open_store(args, keys=True) as ctx:
        outcomes = run_due(ctx.store, ctx.config, max_items=args.max)
    sent = sum(1 for o in outcomes if o.sent)
    print(f"{len(outcomes)} due, {sent} sent, {len(outcomes) - sent} not sent")
    return 0
