"""Command line front end: argparse only, one module per command group, no logic of its own."""
