"""``smimegate policy``: questions about the effective policy.

    smimegate policy explain FROM TO... [--subject S] [--unauthorised] [--json]
        what the milter would do with a plain message from FROM to TO...: direction, signing
        and its certificate(s), per recipient encrypt / clear / refuse with the certificate
        used and why each other one was not, and the policy values that decided with their
        levels. The milter's own decision code, run read-only (smimegate.service.explain).
"""

from __future__ import annotations

import argparse
from typing import Any

from smimegate.cli.common import print_json
from smimegate.cli.context import open_store


def register(sub: Any) -> None:
    parser = sub.add_parser("policy", help="explain what the milter would do with a message")
    commands = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    explain = commands.add_parser(
        "explain", help="the milter's decision for a sender, recipients and Subject",
        description="Print what the milter would do with a plain message from FROM to each "
        "TO: whether it is signed and with which certificate(s), whether each recipient gets "
        "it encrypted (and to which certificate, and why every other certificate was not "
        "used: expired, revoked, not trusted, pqc ...), refused or in clear, and the policy "
        "values that decided with the level each came from (default, global, domain, user, "
        "ldap). It runs the milter's own decision code over the store as it is now and "
        "changes nothing. The client counts as authorised (SMTP AUTH, trusted network) "
        "unless --unauthorised is given.")
    explain.add_argument("sender", metavar="FROM", help="the envelope sender")
    explain.add_argument("recipients", metavar="TO", nargs="+", help="envelope recipients")
    explain.add_argument("--subject", help="the Subject (the encryption trigger is matched "
                                           "against it)")
    explain.add_argument("--unauthorised", action="store_true",
                         help="the client is not authorised to send as an internal user")
    explain.add_argument("--json", action="store_true", help="print the answer as JSON")
    explain.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    from smimegate.service import explain

    asked = explain.question(args.sender, args.recipients, args.subject,
                             not args.unauthorised)  # refused before the store is opened
    with open_store(args, keys=True) as ctx:
        answer = explain.explain(ctx.store, ctx.config, asked)
    if args.json:
        print_json(answer)
    else:
        print("\n".join(text_lines(answer)))
    return 0  # the question was answered; a refusal is part of the answer


def text_lines(answer: dict[str, Any]) -> list[str]:
    """The answer for a terminal: the decision first, then each recipient, then the policy."""
    sign = answer["sign"]
    lines = [f"direction: {answer['direction']} ({'; '.join(answer['why'])})"]
    if answer["refusal"]:
        lines.append(f"refused: {answer['refusal']}")
    if sign["sign"]:
        signers = ", ".join(f"{s['family']} {s['subject']} serial {s['serial']}"
                            for s in sign["signers"])
        lines.append(f"sign: yes ({sign['mode']}) with {signers}")
    else:
        lines.append("sign: no")
    for k in sign["keys"]:
        state = "used" if k["used"] else f"not used: {k['why']}"
        lines.append(f"    signing key {k['kind']} {k['subject']} serial {k['serial']}: {state}")
    if answer["subject"]["trigger"]:
        lines.append(f"subject sent: {answer['subject']['sent']} (trigger matched)")
    for copy in answer["copies"]:
        lines.append(f"copy: {copy['action']} to {', '.join(copy['recipients'])}")
    for r in answer["recipients"]:
        algorithm = f" {r['cipher']}" + (f", {r['key_transport']}" if r["key_transport"]
                                         else "") if r["cipher"] else ""
        lines.append(f"<{r['address']}>: {r['action']}{algorithm} ({'; '.join(r['why'])})")
        for c in r["certificates"]:
            what = c.get("subject") or c["fingerprint"][:16]
            state = "used" if c["used"] else f"not used: {c['why']}"
            kind = f" {c['kind']}" if c["kind"] else ""
            lines.append(f"    certificate{kind} {what}"
                         + (f" serial {c['serial']}" if "serial" in c else "") + f": {state}")
    lines.append(f"policy of <{answer['sender']}> (sender):")
    lines += _policy_lines(answer["sender_policy"])
    for r in answer["recipients"]:
        lines.append(f"policy of <{r['address']}>:")
        lines += _policy_lines(r["policy"])
    return lines


def _policy_lines(values: dict[str, dict[str, str]]) -> list[str]:
    width = max(len(name) for name in values)
    return [f"    {name:<{width}}  {v['value'] if v['value'] != '' else chr(34) * 2}  "
            f"({v['from']})" for name, v in values.items()]
