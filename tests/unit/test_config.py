"""The configuration loader, the option table, the sample file and the ``config`` commands."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import get_args, get_origin

import pytest

from smimegate import config as cfg
from smimegate.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "contrib" / "smimegate.sample.toml"


def load_text(tmp_path: Path, text: str, name: str = "smimegate.toml") -> cfg.Config:
    path = tmp_path / name
    path.write_text(text)
    return cfg.load(path)


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: ") :]


# --- defaults and the contract ---------------------------------------------------------------


def test_contract_defaults():
    c = cfg.Config()
    assert c.store.url == "sqlite:////var/lib/smimegate/smimegate.db"
    assert c.store.master_key_file == "/etc/smimegate/master.key"
    assert c.milter.socket == "inet:8891@127.0.0.1"
    assert c.milter.header_prefix == "X-Smimegate-Info-"
    assert c.milter.trusted_networks == ("127.0.0.0/8", "::1/128")
    assert c.milter.originating_daemons == ("ORIGINATING",)
    assert c.milter.reinject == "smtp:127.0.0.1:10026"
    assert c.milter.on_internal_error == "tempfail"
    assert c.smtp.relay == "127.0.0.1:25"
    assert c.smtp.sender == "postmaster@example.com"
    assert c.sms.transport == "http"
    assert c.sms.url == "https://sms.example/api/send"
    assert c.ldap.urls == ("ldap://127.0.0.1:389",)
    assert c.ldap.bind_dn == "cn=smimegate,dc=example,dc=com"
    assert c.ldap.password_file == "/etc/smimegate/ldap.secret"
    assert c.ldap.start_tls is False
    assert c.ldap.ca_file == ""
    assert c.ldap.base_dn == "ou=people,dc=example,dc=com"
    assert c.ldap.user_filter == "(|(mail={email})(mailAlternateAddress={email}))"
    assert c.ldap.cache_ttl == 300
    assert c.ldap.on_unavailable == "tempfail"
    assert c.ldap.attributes["mail"] == ("mail",)
    assert c.ldap.attributes["certificates"] == ("userSMIMECertificate", "userCertificate;binary")
    assert c.ldap.attributes["phone"] == ("mobile",)
    assert c.ldap.attributes["encrypt_mode"] == ("smimegateEncryptMode",)
    assert c.crl.fetch_interval == 43200
    assert c.ldap.enabled is False


# The TOML block of CONTRACT.md, verbatim: it must load and give exactly those values.
CONTRACT_TOML = """
[store]
url = "sqlite:////var/lib/smimegate/smimegate.db"   # or "postgresql://user@host/dbname"
master_key_file = "/etc/smimegate/master.key"

[milter]
socket = "inet:8891@127.0.0.1"
header_prefix = "X-Smimegate-Info-"
trusted_networks = ["127.0.0.0/8", "::1/128"]
originating_daemons = ["ORIGINATING"]
reinject = "smtp:127.0.0.1:10026"
on_internal_error = "tempfail"

[smtp]
relay = "127.0.0.1:25"
sender = "postmaster@example.com"

[sms]
transport = "http"
url = "https://sms.example/api/send"

[ldap]
urls = ["ldap://127.0.0.1:389"]
bind_dn = "cn=smimegate,dc=example,dc=com"
password_file = "/etc/smimegate/ldap.secret"
start_tls = false
ca_file = ""
base_dn = "ou=people,dc=example,dc=com"
user_filter = "(|(mail={email})(mailAlternateAddress={email}))"
cache_ttl = 300
on_unavailable = "tempfail"

[ldap.attributes]
mail = "mail"
certificates = ["userSMIMECertificate", "userCertificate;binary"]
phone = "mobile"
encrypt_mode = "smimegateEncryptMode"
"""


def test_contract_block_loads_as_defaults_with_ldap_on(tmp_path):
    c = load_text(tmp_path, CONTRACT_TOML)
    assert c == dataclasses.replace(
        cfg.Config(), ldap=dataclasses.replace(cfg.Config().ldap, enabled=True)
    )


def test_config_is_frozen():
    c = cfg.Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.milter.socket = "fd:3"  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.ldap.attributes["mail"] = ("x",)  # type: ignore[index]


def test_values_from_file(tmp_path):
    c = load_text(
        tmp_path,
        """
[store]
url = "postgresql://gw@db.example/smimegate"
connect_timeout = 2          # an integer is a fine number of seconds
pool_max = 32
[milter]
socket = "unix:/run/smimegate/milter.sock"
trusted_networks = ["192.168.1.7/24"]
on_malformed = "tempfail"
log = "stdout"
user = "smimegate"
[crl]
fetch_interval = 0
""",
    )
    assert c.store.url == "postgresql://gw@db.example/smimegate"
    assert c.store.connect_timeout == 2.0 and isinstance(c.store.connect_timeout, float)
    assert c.store.pool_max == 32
    assert c.milter.socket == "unix:/run/smimegate/milter.sock"
    assert c.milter.trusted_networks == ("192.168.1.0/24",)  # normalised
    assert c.milter.on_malformed == "tempfail"
    assert c.milter.log == "stdout"
    assert c.crl.fetch_interval == 0
    # untouched options keep their defaults
    assert c.milter.header_prefix == "X-Smimegate-Info-"
    assert c.ldap == cfg.Config().ldap


def test_loaded_types_match_the_table(tmp_path):
    # Every option read back from a file that spells out every default has its declared type.
    c = cfg.loads(uncommented_sample())
    for row in cfg.OPTIONS:
        section = c
        for part in row.section.split("."):
            section = getattr(section, part)
        value = getattr(section, row.name)
        origin = get_origin(row.type)
        if origin is tuple:
            assert isinstance(value, tuple), row.name
        elif origin is not None and origin.__name__ == "Mapping":
            assert isinstance(value, type(cfg.Config().ldap.attributes)), row.name
        elif get_args(row.type) and origin is not None:
            assert value in row.choices, row.name
        else:
            assert type(value) is row.type, (row.name, type(value))


def test_every_option_has_a_doc_and_a_unique_name():
    seen = set()
    for row in cfg.OPTIONS:
        assert row.doc.strip().endswith("."), row.name
        key = (row.section, row.name)
        assert key not in seen
        seen.add(key)
    assert {r.section for r in cfg.OPTIONS} == {"store", "milter", "crl", "smtp", "sms", "queue", "ldap",
                                             "web", "smimea"}


@pytest.mark.parametrize("value", ["dns.example:53", "127.0.0.1", "127.0.0.1:0", "::1:53"])
def test_smimea_resolver_must_be_an_address_and_port(value):
    with pytest.raises(cfg.ConfigError,
                       match=r"\[smimea\] resolver: expected IP:PORT of a validating resolver"):
        cfg.loads(f'[smimea]\nlookup = true\nresolver = "{value}"\n', "t.toml")
    config = cfg.loads('[smimea]\nlookup = true\nresolver = "[::1]:5353"\n', "t.toml")
    assert config.smimea.resolver == "[::1]:5353" and config.smimea.trust_dane_ee


# --- missing files ---------------------------------------------------------------------------


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(cfg.ConfigError, match=r"nope\.toml: no such file"):
        cfg.load(tmp_path / "nope.toml", explicit=True)


def test_missing_default_file_gives_defaults(tmp_path):
    assert cfg.load(tmp_path / "nope.toml", explicit=False) == cfg.Config()


def test_empty_file_gives_defaults(tmp_path):
    assert load_text(tmp_path, "") == cfg.Config()


def test_unreadable_and_undecodable_files(tmp_path):
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(cfg.ConfigError, match="cannot read"):
        cfg.load(tmp_path / "dir.toml")
    (tmp_path / "latin1.toml").write_bytes(b'[smtp]\nsender = "m\xe9@x"\n')
    with pytest.raises(cfg.ConfigError, match="not UTF-8"):
        cfg.load(tmp_path / "latin1.toml")


def test_syntax_error_names_file_and_line(tmp_path):
    assert re.match(r"not valid TOML: .*line 2", error_of(tmp_path, "[milter]\nsocket = \n"))


# --- unknown sections and keys ---------------------------------------------------------------


def test_unknown_section(tmp_path):
    message = error_of(tmp_path, "[bogus]\nx = 1\n")
    assert message.startswith("[bogus]: unknown section (known: store, milter")


def test_misspelt_section_suggests(tmp_path):
    assert error_of(tmp_path, "[miltre]\n") == "[miltre]: unknown section (did you mean milter?)"


def test_unknown_top_level_key(tmp_path):
    assert error_of(tmp_path, 'socket = "fd:3"\n').startswith("socket: unknown top-level key")


@pytest.mark.parametrize("section", ["store", "milter", "crl", "smtp", "sms", "ldap"])
def test_unknown_key_in_each_section(tmp_path, section):
    assert error_of(tmp_path, f"[{section}]\nno_such_option = 1\n") == (
        f"[{section}] no_such_option: unknown key"
    )


def test_unknown_key_suggests_the_near_one(tmp_path):
    assert error_of(tmp_path, '[milter]\nsockte = "fd:3"\n') == (
        "[milter] sockte: unknown key (did you mean socket?)"
    )


def test_unknown_key_in_group_rule(tmp_path):
    text = '[ldap]\n[[ldap.groups]]\ndn = "cn=g"\nmembers = "x"\n'
    assert error_of(tmp_path, text) == "[[ldap.groups]] #1 members: unknown key"


# --- wrong types and bad values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[milter]\nsocket = 3", "[milter] socket: expected a string, got integer"),
        ('[store]\npool_max = "10"', "[store] pool_max: expected an integer, got string"),
        ("[store]\npool_max = true", "[store] pool_max: expected an integer, got boolean"),
        ("[store]\npool_max = 1.5", "[store] pool_max: expected an integer, got float"),
        ("[store]\nquery_timeout = false", "[store] query_timeout: expected a number, got boolean"),
        ('[ldap]\nstart_tls = "no"', "[ldap] start_tls: expected a boolean, got string"),
        ("[ldap]\nstart_tls = 0", "[ldap] start_tls: expected a boolean, got integer"),
        (
            '[milter]\ntrusted_networks = "10.0.0.0/8"',
            "[milter] trusted_networks: expected an array, got string",
        ),
        (
            '[milter]\ntrusted_networks = ["10.0.0.0/8", 7]',
            "[milter] trusted_networks[1]: expected a string, got integer",
        ),
        ("[milter]\nuser = 2024-01-01", "[milter] user: expected a string, got date"),
        ("milter = 1", "[milter]: expected a table, got integer"),
        ("[ldap]\nattributes = 3", "[ldap] attributes: expected a table, got integer"),
        ("[ldap]\ngroups = 3", "[ldap] groups: expected an array of tables, got integer"),
        (
            "[ldap.attributes]\nphone = 3",
            "[ldap.attributes] phone: expected a string or an array, got integer",
        ),
        (
            '[ldap]\n[[ldap.groups]]\ndn = "cn=g"\nproperties = { sign = false }',
            "[[ldap.groups]] #1 properties.sign: expected a string, got boolean",
        ),
    ],
)
def test_wrong_types(tmp_path, text, expected):
    assert error_of(tmp_path, text + "\n") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[milter]\non_internal_error = "bounce"',
            '[milter] on_internal_error: expected one of "tempfail", "accept", "reject", '
            'got "bounce"',
        ),
        ('[milter]\non_malformed = "drop"', "[milter] on_malformed: expected one of"),
        ('[milter]\nlog = "file"', '[milter] log: expected one of "syslog", "stdout"'),
        ('[milter]\nsyslog_facility = "kern"', "[milter] syslog_facility: expected one of"),
        ('[milter]\nsocket = "tcp:8891"', "[milter] socket: not a milter socket"),
        ('[milter]\nsocket = "inet:99999@localhost"', "[milter] socket: not a milter socket"),
        (
            '[milter]\ntrusted_networks = ["10.0.0.300/8"]',
            "[milter] trusted_networks[0]: not an IP",
        ),
        ('[milter]\nheader_prefix = "X Bad:"', "[milter] header_prefix: not a header field"),
        ('[milter]\nreinject = "127.0.0.1:10026"', "[milter] reinject: expected smtp:HOST:PORT"),
        ("[milter]\nmax_message_size = -1", "[milter] max_message_size: must be at least 0"),
        ('[milter]\nsocket_mode = "rw"', "[milter] socket_mode: expected an octal file mode"),
        ('[store]\nurl = "mysql://x"', "[store] url: expected"),
        ("[store]\nconnect_timeout = 0", "[store] connect_timeout: must be greater than 0"),
        ("[store]\npool_min = 5\npool_max = 2", "[store] pool_min: must not be greater than"),
        ('[smtp]\nrelay = "localhost"', "[smtp] relay: expected HOST:PORT"),
        ('[sms]\ntransport = "carrier-pigeon"', "[sms] transport: expected one of"),
        ('[sms]\ntransport = "file"', '[sms] file: required when transport = "file"'),
        ('[sms]\ntransport = "command"', '[sms] command: required when transport = "command"'),
        ('[sms]\nurl = "ftp://x"', "[sms] url: expected an http:// or https:// URL"),
        ('[sms]\nmethod = "GET"', '[sms] method: expected one of "POST", "PUT", got "GET"'),
        ('[crl]\nrevocation_mode = "strict"', "[crl] revocation_mode: expected one of"),
        ("[crl]\nfetch_interval = -5", "[crl] fetch_interval: must be at least 0"),
        ('[ldap]\nurls = ["http://dir"]', "[ldap] urls[0]: expected ldap://HOST"),
        ("[ldap]\nurls = []", "[ldap] urls: at least one URL is required"),
        ('[ldap]\nuser_filter = "(mail=x)"', "[ldap] user_filter: expected an LDAP filter"),
        ('[ldap]\non_unavailable = "ignore"', '[ldap] on_unavailable: expected one of "tempfail"'),
        (
            '[ldap]\npublish_certificates = ["cACertificate"]',
            '[ldap] publish_certificates[0]: "cACertificate" is not one of',
        ),
        ('[ldap.attributes]\nphone = "tele phone"', "[ldap.attributes] phone[0]: not an LDAP"),
        ('[ldap.attributes]\nPhone = "mobile"', "[ldap.attributes] Phone: not a property name"),
        ('[ldap]\n[[ldap.groups]]\nmember_attribute = "member"', "[[ldap.groups]] #1 dn: required"),
        (
            '[ldap]\n[[ldap.groups]]\ndn = "cn=a"\n[[ldap.groups]]\ndn = ""',
            "[[ldap.groups]] #2 dn: must not be empty",
        ),
        (
            '[ldap]\n[[ldap.groups]]\ndn = "cn=a"\nproperties = { "Bad Name" = "x" }',
            "[[ldap.groups]] #1 properties.Bad Name: not a property name",
        ),
    ],
)
def test_bad_values(tmp_path, text, expected):
    assert error_of(tmp_path, text + "\n").startswith(expected)


# --- nested tables ---------------------------------------------------------------------------


def test_ldap_table_turns_ldap_on_unless_disabled(tmp_path):
    assert load_text(tmp_path, '[ldap]\nbase_dn = "dc=x"\n').ldap.enabled is True
    assert load_text(tmp_path, "[ldap]\nenabled = false\n").ldap.enabled is False
    assert load_text(tmp_path, "[ldap.attributes]\n").ldap.enabled is True
    assert load_text(tmp_path, "[milter]\n").ldap.enabled is False


def test_ldap_attributes_merge_over_defaults(tmp_path):
    c = load_text(
        tmp_path,
        """
[ldap.attributes]
phone = "telephoneNumber"
certificates = "userCertificate;binary"
alternate_mail = []
sign = "smimegateSign"
""",
    )
    attrs = c.ldap.attributes
    assert attrs["phone"] == ("telephoneNumber",)
    assert attrs["certificates"] == ("userCertificate;binary",)
    assert attrs["alternate_mail"] == ()  # turned off
    assert attrs["sign"] == ("smimegateSign",)  # open-ended: any property name
    assert attrs["mail"] == ("mail",)  # default kept
    assert attrs["encrypt_mode"] == ("smimegateEncryptMode",)


def test_ldap_group_rules(tmp_path):
    c = load_text(
        tmp_path,
        """
[ldap]
base_dn = "dc=example,dc=com"

[[ldap.groups]]
dn = "cn=legal,ou=groups,dc=example,dc=com"
properties = { encrypt_mode = "mandatory", sign = "yes" }

[[ldap.groups]]
dn = "cn=interns,ou=groups,dc=example,dc=com"
member_attribute = "uniqueMember"
""",
    )
    first, second = c.ldap.groups
    assert first.dn == "cn=legal,ou=groups,dc=example,dc=com"
    assert first.member_attribute == "member"
    assert dict(first.properties) == {"encrypt_mode": "mandatory", "sign": "yes"}
    assert second.member_attribute == "uniqueMember"
    assert dict(second.properties) == {}


def test_ldap_single_url_and_publish_names_normalised(tmp_path):
    c = load_text(
        tmp_path,
        '[ldap]\nurls = "ldaps://dir.example:636"\n'
        'publish_certificates = ["usersmimecertificate;binary"]\n',
    )
    assert c.ldap.urls == ("ldaps://dir.example:636",)
    assert c.ldap.publish_certificates == ("userSMIMECertificate;binary",)


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "smimegate.toml").write_text(
        '[store]\nmaster_key_file = "keys/master.key"\n'
        '[ldap]\npassword_file = "/abs/ldap.secret"\n'
        '[sms]\ntransport = "file"\nfile = "sms.out"\n'
    )
    c = cfg.load(sub / "smimegate.toml")
    assert c.store.master_key_file == str(sub.resolve() / "keys" / "master.key")
    assert c.ldap.password_file == "/abs/ldap.secret"
    assert c.sms.file == str(sub.resolve() / "sms.out")
    assert c.ldap.ca_file == ""  # "" stays "not set"


def test_socket_specs_accepted(tmp_path):
    for spec in ["inet:8891@127.0.0.1", "inet:8891", "inet6:8891@[::1]", "unix:/run/m.sock",
                 "local:/run/m.sock", "fd:3"]:  # fmt: skip
        assert load_text(tmp_path, f'[milter]\nsocket = "{spec}"\n').milter.socket == spec


# --- the sample configuration ----------------------------------------------------------------


def uncommented_sample() -> str:
    """The sample with every ``#setting`` and ``#[section]`` line uncommented."""
    return re.sub(r"(?m)^#(?=[\[a-z])", "", cfg.render_sample())


def test_checked_in_sample_is_up_to_date():
    assert SAMPLE.read_text() == cfg.render_sample(), (
        f"{SAMPLE.relative_to(ROOT)} is out of date; regenerate it with "
        "`.venv/bin/smimegate config sample > contrib/smimegate.sample.toml`"
    )


def test_sample_lists_every_option_with_its_doc():
    text = cfg.render_sample()
    for row in cfg.OPTIONS:
        if row.array_of_tables:
            assert f"# [[{row.section}.{row.name}]]" in text
            continue
        if isinstance(row.default, Mapping):
            assert f"#[{row.section}.{row.name}]" in text
            continue
        assert f"\n#{row.name} = {cfg.toml_value(row.default)}\n" in text, row.name
        first_words = " ".join(row.doc.split()[:4])
        assert first_words in " ".join(line.lstrip("# ") for line in text.splitlines()), row.name


def test_sample_as_is_gives_the_defaults():
    assert cfg.loads(cfg.render_sample(), "sample") == cfg.Config()


def test_sample_uncommented_gives_the_defaults():
    # Every "#key = value" line shows the real default: uncommenting them all changes nothing.
    assert cfg.loads(uncommented_sample(), "sample") == cfg.Config()


def test_sample_example_group_rule_is_valid():
    text = cfg.render_sample()
    example = re.search(r"(?ms)^# \[\[ldap\.groups\]\]\n(# .*?)\Z", text)
    assert example is not None
    body = "\n".join(line[2:] for line in ("# [[ldap.groups]]\n" + example.group(1)).splitlines())
    c = cfg.loads("[ldap]\n" + body)
    assert c.ldap.groups[0].properties["encrypt_mode"] == "mandatory"


def test_sample_lines_fit_100_columns():
    assert all(len(line) <= 100 for line in cfg.render_sample().splitlines())


# --- the config command group ----------------------------------------------------------------


def test_cli_sample_prints_the_sample(capsys):
    assert main(["config", "sample"]) == 0
    assert capsys.readouterr().out == cfg.render_sample()


def test_cli_check_ok(tmp_path, capsys):
    path = tmp_path / "ok.toml"
    path.write_text(CONTRACT_TOML)
    assert main(["-c", str(path), "config", "check"]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_cli_check_bad_type_exits_2_naming_key_and_file(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[milter]\nsocket = 8891\n")
    assert main(["-c", str(path), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert err == f"smimegate: {path}: [milter] socket: expected a string, got integer\n"


def test_cli_check_unknown_key_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[store]\nurll = 'x'\n")
    assert main(["-c", str(path), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "[store] urll: unknown key" in err and str(path) in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_missing_explicit_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "missing.toml"
    assert main(["--config", str(missing), "config", "check"]) == 2
    assert capsys.readouterr().err == f"smimegate: {missing}: no such file\n"


def test_cli_environment_variable_names_the_file(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "env-missing.toml"
    monkeypatch.setenv("SMIMEGATE_CONFIG", str(missing))
    assert main(["config", "check"]) == 2
    assert str(missing) in capsys.readouterr().err
    good = tmp_path / "env.toml"
    good.write_text("[milter]\nlog = 'stdout'\n")
    monkeypatch.setenv("SMIMEGATE_CONFIG", str(good))
    assert main(["config", "check"]) == 0


def test_cli_default_path_missing_uses_defaults(capsys, monkeypatch):
    monkeypatch.delenv("SMIMEGATE_CONFIG", raising=False)
    from smimegate.cli import main as cli_main

    monkeypatch.setattr(cli_main, "DEFAULT_CONFIG", "/nonexistent/smimegate.toml")
    assert main(["config", "check"]) == 0
    assert "not found; the defaults are in use" in capsys.readouterr().out


def test_cli_config_without_action_is_usage_error(capsys):
    assert main(["config"]) == 2
    assert "required" in capsys.readouterr().err


def test_cli_show_round_trips(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text(
        CONTRACT_TOML + '\n[[ldap.groups]]\ndn = "cn=g"\nproperties = { sign = "no" }\n'
    )
    expected = cfg.load(path)
    assert main(["-c", str(path), "config", "show"]) == 0
    shown = capsys.readouterr().out
    assert cfg.loads(shown, "shown") == expected
    assert main(["-c", str(path), "config", "show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["milter"]["socket"] == "inet:8891@127.0.0.1"
    assert data["ldap"]["groups"] == [
        {"dn": "cn=g", "member_attribute": "member", "properties": {"sign": "no"}}
    ]
    assert tomllib.loads(shown)["ldap"]["enabled"] is True
