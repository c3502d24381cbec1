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
