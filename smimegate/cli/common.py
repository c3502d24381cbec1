"""What every command group shares: the error types that map to exit codes, and output helpers."""

from __future__ import annotations

import json
import sys
from typing import Any


class OperationFailed(Exception):
    """The operation failed: one clear line on stderr, exit code 1."""


class UsageError(Exception):
    """Usage or configuration error: one clear line on stderr, exit code 2."""


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
