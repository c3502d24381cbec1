"""``smimegate web``'s arguments and ``[web]`` configuration: bad ones are one clear line."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smimegate import config as cfg
from smimegate.cli.main import main
from smimegate.cli.web import split_listen
from tests.helpers.ports import free_port


def test_listen_forms() -> None:
    assert split_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert split_listen("[::1]:8443") == ("::1", 8443)
    assert split_listen("admin.example.com:443") == ("admin.example.com", 443)


def test_bad_listen_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n', encoding="utf-8")
    assert main(["-c", str(config), "web", "--listen", "8080"]) == 2
    err = capsys.readouterr().err
    assert "--listen" in err and "HOST:PORT" in err and len(err.strip().splitlines()) == 1


def test_web_section() -> None:
    web = cfg.loads('[web]\nlisten = "[::1]:9000"\nsession_idle = 600\n').web
    assert (web.listen, web.session_idle, web.session_max) == ("[::1]:9000", 600, 43200)
    with pytest.raises(cfg.ConfigError, match=r"\[web\] tls_key: tls_cert and tls_key go"):
        cfg.loads('[web]\ntls_cert = "/etc/ssl/a.pem"\n')
    with pytest.raises(cfg.ConfigError, match=r"\[web\] session_idle"):
        cfg.loads("[web]\nsession_idle = 5\n")
    with pytest.raises(cfg.ConfigError, match=r"\[web\] listen"):
        cfg.loads('[web]\nlisten = "nowhere"\n')


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "web.crt", tmp_path / "web.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_web_serves_https_with_host_prefixed_secure_cookies(tmp_path: Path) -> None:
    """The real `smimegate web` process with [web] tls_cert/tls_key, checked over TLS."""
    cert_path, key_path = _self_signed(tmp_path)
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n'
                      f'master_key_file = "{tmp_path}/master.key"\n'
                      f'[web]\nlisten = "127.0.0.1:{port}"\ntls_cert = "{cert_path}"\n'
                      f'tls_key = "{key_path}"\n', encoding="utf-8")
    assert main(["-c", str(config), "db", "init"]) == 0
    process = subprocess.Popen([sys.executable, "-m", "smimegate", "-c", str(config), "web"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        context = ssl.create_default_context(cafile=str(cert_path))
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Connection: close\r\n\r\n")
                    answer = b""
                    while chunk := tls.recv(65536):
                        answer += chunk
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "smimegate web never listened"
                time.sleep(0.05)
        head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
        assert head.startswith("http/1.1 200")
        assert "set-cookie: __host-smimegate-login=" in head
        cookie = next(line for line in head.splitlines() if "__host-smimegate-login" in line)
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert "strict-transport-security: max-age=" in head
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_help_names_metrics_and_its_token(capsys: pytest.CaptureFixture[str]) -> None:
    from smimegate.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(["web", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "/metrics" in text and "--role auditor" in text
