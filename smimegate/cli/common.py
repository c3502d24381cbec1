"""What every command group shares: the error types that map to exit codes, and output helpers."""

from __future__ import annotations

import json
import sys
from typing import Any

from smimegate.service.errors import InvalidInput, OperationFailed

# The service layer's errors are the CLI's, so a command passes them through untouched:
# OperationFailed (the operation failed) is one clear line on stderr and exit code 1;
# UsageError, the service's InvalidInput (a bad argument) or a usage or configuration error,
# is one clear line and exit code 2.
UsageError = InvalidInput

__all__ = ["OperationFailed", "UsageError", "print_json"]


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
