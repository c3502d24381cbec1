"""Fixtures for the interoperability tests: one throwaway PKI per session, one client per module.

The engine is imported through the ``smime`` fixture, not at module level, so the client-to-client
checks of the wrappers still run (and tell where a failure lies) while the engine is incomplete.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.clients import Gpgsm, Nss, OpenSSL, Pki, SNail, make_pki

# A MIME entity as a user agent would hand it to S/MIME: several lines, a long one, LF ends
# (clients and the engine must sign the CRLF form, RFC 8551 3.1.1).
ENTITY = (
    b"Content-Type: text/plain; charset=us-ascii\n"
    b"Content-Transfer-Encoding: 7bit\n"
    b"\n"
    b"Hello Bob,\n"
    b"\n"
    b"this message crossed a real S/MIME client and smimegate.\n"
    + b"0123456789 " * 8
    + b"\n-- \nAlice\n"
)

REQUIRED_TOOLS = ("openssl", "gpgsm", "gpgconf", "certutil", "cmsutil", "pk12util", "s-nail")


@pytest.fixture(scope="session", autouse=True)
def _tools_installed() -> None:
    """Fail loudly (never skip) when a client program is missing."""
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    assert not missing, f"e2e interop tests need these programs installed: {missing}"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Engine:
    """The engine's public API (engine_api.md), each name imported when a test first uses it.

    Lazy per name, so that a test needing only sign/verify runs while encrypt.py is missing.
    """

    WHERE = {
        "sign": "smimegate.smime.sign",
        "verify": "smimegate.smime.verify",
        "encrypt": "smimegate.smime.encrypt",
        "Recipient": "smimegate.smime.encrypt",
        "decrypt": "smimegate.smime.decrypt",
        "split_message": "smimegate.smime.mime",
        "result_headers": "smimegate.smime.results",
    }

    def __getattr__(self, name: str) -> Any:
        if name not in self.WHERE:
            raise AttributeError(name)
        return getattr(importlib.import_module(self.WHERE[name]), name)


@pytest.fixture(scope="session")
def smime() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def openssl(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> OpenSSL:
    return OpenSSL(pki, tmp_path_factory.mktemp("openssl"))


@pytest.fixture(scope="module")
def gpgsm(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gpgsm]:
    home = tmp_path_factory.mktemp("gnupg")
    client = Gpgsm(pki, home, [pki.alice, pki.bob])
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def nss(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Nss:
    return Nss(pki, tmp_path_factory.mktemp("nssdb"), [pki.alice, pki.bob])


@pytest.fixture(scope="module")
def snail(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> SNail:
    return SNail(pki, tmp_path_factory.mktemp("snail"))


# The real-MTA fixtures (Postfix, Sendmail, the smimegate milter) live in their own module.
from tests.e2e.mta_fixtures import postfix_world, sendmail_world, store_dir, world  # noqa: E402,F401,I001
