#!/bin/bash
# `make demo`: the seed's flow (CA, internal domain and user, an external recipient's PKCS#12,
# a message each way) on a private Postfix in a temporary directory; see scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "smimegate: make demo starts a private Postfix, which needs root" >&2
    exit 1
fi
exec .venv/bin/python scripts/demo.py "$@"
