from smimegate.cli.main import main


def test_help_exits_zero(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "smimegate" in capsys.readouterr().out


def test_unknown_command_is_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_usage_errors_name_the_program_once(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smimegate: argument COMMAND: invalid choice: 'no-such-command'")
    assert err.count("smimegate:") == 1
    # A subcommand's error names the subcommand after the one program prefix.
    assert main(["crl", "create", "--signature-algorithm", "md5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smimegate: crl create: argument --signature-algorithm: invalid choice")
    assert err.count("smimegate") == 1
    assert main(["crl", "create", "--no-such-option"]) == 2
    assert capsys.readouterr().err == "smimegate: unrecognized arguments: --no-such-option\n"


def _failing_domain_list(monkeypatch, exc: Exception) -> None:
    from smimegate.cli import domain

    def broken(args):
        raise exc

    monkeypatch.setattr(domain, "_list", broken)


def test_a_failure_no_command_mapped_is_one_line(monkeypatch, capsys):
    _failing_domain_list(monkeypatch, RuntimeError("disk on fire\nsecond line"))
    assert main(["domain", "list"]) == 1
    err = capsys.readouterr().err
    assert err == ("smimegate: error: RuntimeError: disk on fire second line "
                   "(--debug shows the traceback)\n")


def test_debug_shows_the_traceback_of_an_unmapped_failure(monkeypatch, capsys):
    _failing_domain_list(monkeypatch, RuntimeError("disk on fire"))
    assert main(["--debug", "domain", "list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("smimegate: error: RuntimeError: disk on fire\n")
