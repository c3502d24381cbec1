"""``smimegate web``'s arguments and ``[web]`` configuration: bad ones are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimegate import config as cfg
from smimegate.cli.main import main
from smimegate.cli.web import split_listen


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
