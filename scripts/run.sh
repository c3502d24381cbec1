#!/bin/bash
# `make run`: until the milter exists (issue 5), show what the command line offers.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/smimegate --help
