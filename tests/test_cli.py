"""The CLI's one-line errors for what a new user meets first."""

import os

import pytest

from nmfuse import cli


@pytest.mark.parametrize("command", ["mount", "run"])
def test_not_root_is_one_line(monkeypatch, capsys, tmp_path, command):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    argv = [command, str(tmp_path / "x")] if command == "mount" else ["run", "--", "true"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must run as root" in err[0]


def test_status_of_an_unserved_path_is_one_line(capsys, tmp_path):
    assert cli.main(["status", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{tmp_path / 'none'}: not served by nmfuse"]


def test_bad_pool_geometry_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["mount", str(tmp_path / "x"), "--buf-size", "100"]) == 2
    assert "bad pool geometry" in capsys.readouterr().err


def test_run_needs_a_command(capsys):
    assert cli.main(["run"]) == 2
    assert "needs a command" in capsys.readouterr().err
