"""The `aura` entry point: dispatch, help, errors, and that every listed subcommand exists."""

import argparse
import importlib

import pytest

import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for words in cli.COMMANDS:
        assert " ".join(words) in out


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("words", list(cli.COMMANDS), ids=lambda w: "-".join(w))
def test_every_subcommand_module_builds_its_parser(words):
    module = importlib.import_module(cli.COMMANDS[words][0])
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    assert callable(module.run)
    # --help must work for every command without side effects.
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--help"])
    assert exc.value.code == 0
