"""``smimegate message process``: the gateway offline, through the real console script."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.milter.gateway_support import AUTHSERV, World, make_world, openssl, plain

ALICE, CAROL = "alice@internal.test", "carol@external.test"
MAND = "mand@external.test"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("process")
    world = make_world(root)
    (root / "smimegate.toml").write_text(
        "[store]\n"
        f'url = "sqlite:///{root / "store.db"}"\n'
        f'master_key_file = "{root / "master.key"}"\n'
        "[milter]\n"
        f'authserv_id = "{AUTHSERV}"\n'
        f'reinject_secret_file = "{root / "reinject.key"}"\n'
    )
    (root / "in.eml").write_bytes(plain(ALICE, CAROL).replace(b"\r\n", b"\n"))
    return world


def cli(world: World, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "smimegate", "-c", str(world.root / "smimegate.toml"),
         "message", "process", str(world.root / "in.eml"), *args],
        capture_output=True, check=False, timeout=60)


def test_authenticated_outbound_is_signed_and_encrypted(world: World) -> None:
    out = world.root / "out.eml"
    done = cli(world, "--sender", ALICE, "--recipient", CAROL, "--authenticated",
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert "OFFLINE: smimegate: direction=outbound action=sign+encrypt" in err
    key, crt = world.pem("carol")
    inner = openssl("smime", "-decrypt", "-inkey", str(key), "-recip", str(crt),
                    data=out.read_bytes())
    assert b"multipart/signed" in inner


def test_unauthenticated_client_is_not_signed(world: World) -> None:
    done = cli(world, "--sender", ALICE, "--recipient", CAROL)
    assert done.returncode == 0, done.stderr
    assert b"direction=relay" in done.stderr
    assert done.stdout.endswith(b"Hello there.\r\n") and b"pkcs7" not in done.stdout


def test_trusted_client_ip_counts_as_internal(world: World) -> None:
    done = cli(world, "--sender", ALICE, "--recipient", CAROL, "--client-ip", "127.0.0.1")
    assert done.returncode == 0 and b"smime-type=enveloped-data" in done.stdout


def test_mandatory_refusal_exits_1(world: World) -> None:
    done = cli(world, "--sender", ALICE, "--recipient", MAND, "--authenticated")
    assert done.returncode == 1
    assert b"550 5.7.1" in done.stderr and MAND.encode() in done.stderr
    assert done.stdout == b""


def test_unwritable_out_fails_with_one_line(world: World) -> None:
    done = cli(world, "--sender", ALICE, "--recipient", CAROL, "--authenticated",
               "--out", str(world.root / "missing" / "out.eml"))
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "smimegate: error: " in err and "missing/out.eml" in err
    assert "Traceback" not in err
