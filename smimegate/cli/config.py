"""``smimegate config``: the sample configuration, and checking or showing the one in use.

    smimegate config sample          every option, its default and doc, as commented TOML
    smimegate config check           load the configuration; exit 0, or 2 naming file and key
    smimegate config show [--json]   the effective configuration (file values over defaults)

Other command groups load the configuration through ``load_from_args``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smimegate import config as cfg
from smimegate.cli.common import print_json


def load_from_args(args: argparse.Namespace) -> cfg.Config:
    """The Config named by -c/--config, $SMIMEGATE_CONFIG or the default path.

    Raises ConfigError (exit 2 through main) for a missing explicitly named file or a bad one.
    """
    from smimegate.cli.main import config_path  # main imports this module's group lazily

    path, explicit = config_path(args)
    return cfg.load(path, explicit=explicit)


def register(sub: Any) -> None:
    parser = sub.add_parser("config", help="sample, check or show the configuration")
    commands = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    sample = commands.add_parser("sample", help="print every option with its default and doc")
    sample.set_defaults(func=_sample)
    check = commands.add_parser("check", help="load the configuration and report problems")
    check.set_defaults(func=_check)
    show = commands.add_parser("show", help="print the effective configuration")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)


def _sample(args: argparse.Namespace) -> int:
    sys.stdout.write(cfg.render_sample())
    return 0


def _check(args: argparse.Namespace) -> int:
    from smimegate.cli.main import config_path

    path, explicit = config_path(args)
    load_from_args(args)
    if not explicit and not Path(path).exists():
        print(f"{path}: not found; the defaults are in use")
    else:
        print(f"{path}: ok")
    return 0


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _show(args: argparse.Namespace) -> int:
    plain = _plain(load_from_args(args))
    if args.json:
        print_json(plain)
        return 0
    # Option values are names of things and file paths, never secrets themselves (secrets
    # live in the files that *_file options name), so printing them all is safe.
    out: list[str] = []
    _toml_tables(plain, "", out)
    sys.stdout.write("\n".join(out).lstrip("\n") + "\n")
    return 0


def _toml_tables(table: Mapping[str, Any], name: str, out: list[str]) -> None:
    """Write ``table`` as TOML: plain keys first, then sub-tables and arrays of tables."""
    scalars = {k: v for k, v in table.items() if not _is_table(v) and not _is_tables(v)}
    if name and (scalars or not table):
        out.extend(["", f"[{name}]"])
    for k, v in scalars.items():
        out.append(f"{_toml_key(k)} = {_toml(v)}")
    for k, v in table.items():
        full = f"{name}.{k}" if name else k
        if _is_table(v):
            _toml_tables(v, full, out)
        elif _is_tables(v):
            for entry in v:
                out.extend(["", f"[[{full}]]"])
                for ek, ev in entry.items():
                    out.append(f"{_toml_key(ek)} = {_toml(ev)}")


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml_key(key: str) -> str:
    return key if key.replace("_", "a").replace("-", "a").isalnum() else _toml(key)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return cfg.toml_value(value)
