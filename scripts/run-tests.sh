#!/bin/bash
# Run the whole suite. Private servers (PostgreSQL, slapd, Postfix) are started by the session
# fixtures in tests/conftest.py on loopback in temp dirs and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
