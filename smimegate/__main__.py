"""``python -m smimegate`` runs the command line."""

import sys

from smimegate.cli.main import main

sys.exit(main())
