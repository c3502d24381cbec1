"""Policy properties on the command line: printing what applies.

Checking names and values and resolving the effective policy is smimegate.service.properties'
job, shared with the web admin and the REST API; a bad name or value typed on the command line
is its InvalidInput, a usage error (exit 2) whose one line lists the allowed names or values.
"""

from __future__ import annotations

import sys

from smimegate.cli.common import print_json
from smimegate.policy import EffectivePolicy


def print_policy(policy: EffectivePolicy, as_json: bool, title: str | None = None) -> None:
    """Print each property's value and the level it came from (CONTRACT.md ``show``)."""
    if as_json:
        print_json(policy.as_dict())
        return
    if title:
        print(title)
    width = max(len(name) for name, _ in policy.items)
    for name, resolved in policy.items:
        value = resolved.value if resolved.value != "" else '""'
        print(f"  {name:<{width}}  {value}  ({resolved.source})")
    sys.stdout.flush()
