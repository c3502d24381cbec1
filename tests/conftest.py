"""Shared fixtures. Paths to the third-party corpora and our own vectors."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.slapd"]

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    return VECTORS
