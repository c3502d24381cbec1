"""The one place where a command loads the configuration and opens the store.

    with open_store(args) as ctx:          # ctx.store, ctx.config
        ...

The configuration comes from -c/--config, $SMIMEGATE_CONFIG or the default path
(smimegate.cli.config.load_from_args; a bad one raises ConfigError, exit 2); the store is
opened by smimegate.store.configured, as the milter opens it. Store errors raised while opening
or inside the block, and the built-in CA's PkiError, become OperationFailed (exit 1) with their
one-line message, so command code does not catch them one by one. Also the output and password
file helpers every command group uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smimegate.cli.common import OperationFailed, UsageError
from smimegate.pki.errors import PkiError

if TYPE_CHECKING:
    from smimegate.config import Config
    from smimegate.store import Store


@dataclass(frozen=True)
class Context:
    """What a command works with."""

    store: Store
    config: Config


@contextmanager
def open_store(args: argparse.Namespace, *, keys: bool = False) -> Iterator[Context]:
    """Open the configured store for one command; closed afterwards.

    keys: the command reads or writes private keys or the delivery queue, so the master key
    file must be readable. Without it the store opens without the master key, so an admin who
    may not read the key can still manage policy and certificates.

    Raises ConfigError (exit 2); OperationFailed (exit 1) for StoreError from opening the store
    or from inside the block (a missing schema says to run `smimegate db init`), and for
    PkiError from the built-in CA's operations inside the block.
    """
    # Imported here, not at the top: command modules import this one while the parser is
    # built, and `smimegate --help` needs no store (issue 9).
    from smimegate.cli.config import load_from_args
    from smimegate.store import StoreError
    from smimegate.store.configured import open_configured

    config = load_from_args(args)
    try:
        store = open_configured(config.store, keys=keys, pool_size=1)  # one command at a time
    except StoreError as exc:
        raise OperationFailed(str(exc)) from None
    try:
        yield Context(store, config)
    except (PkiError, StoreError) as exc:
        raise OperationFailed(str(exc)) from None
    finally:
        store.close()


def read_input(path: str) -> bytes:
    """The content of the file path ("-": stdin). Raises OperationFailed naming the file."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OperationFailed(f"{path}: {exc.strerror or exc}") from None


def write_output(out: str, data: bytes, *, secret: bool = False) -> None:
    """Write data to the file out ("-": stdout); secret files are created mode 0600.

    Raises OperationFailed when the file cannot be written.
    """
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        if secret:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
        else:
            Path(out).write_bytes(data)
    except OSError as exc:
        raise OperationFailed(f"{out}: {exc.strerror or exc}") from None


def read_password_file(path: str) -> str:
    """The first line of path, without its line end. Raises UsageError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"--password-file {path}: {detail}") from None
    return text.splitlines()[0] if text else ""
