"""Model names on the command line (issue 11): a misspelt --model is one line naming the
known models, exit 2; --help lists the registry's names."""

from __future__ import annotations

import pytest

from scandx.cli import main
from scandx.errors import ScandxError
from scandx.models import min_input_size, model_kind
from scandx.models.registry import list_models


@pytest.mark.parametrize("lookup", [model_kind, min_input_size])
def test_registry_lookups_refuse_unknown_names_in_one_line(lookup):
    with pytest.raises(ScandxError, match=r"unknown model 'resnet-18'; known: .*resnet18"):
        lookup("resnet-18")


@pytest.mark.parametrize("command", ["train", "plan"])
def test_misspelt_model_is_one_line_exit_2(command, phantoms, tmp_path, capsys):
    args = [command, "--data", str(phantoms), "--out", str(tmp_path / "r"), "--model", "resnet-18"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == "scandx: error: unknown model 'resnet-18'; known: " + ", ".join(
        list_models()
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["train", "plan"])
def test_help_lists_the_model_names(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in list_models("classifier") + list_models("segmenter"):  # what --model takes
        assert name in out


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "run", "--data", "d", "--bootstrap", "-5"],
        ["evaluate", "run", "--data", "d", "--bootstrap", "0"],
        ["evaluate", "run", "--data", "d", "--bootstrap", "many"],
        ["evaluate", "run", "--data", "d", "--gallery", "-1"],
        ["train", "--data", "d", "--out", "o", "--time-budget", "-3"],
        ["train", "--data", "d", "--out", "o", "--time-budget", "nan"],
        ["plan", "--data", "d", "--out", "o", "--memory-budget", "0"],
    ],
)
def test_out_of_range_numbers_are_refused_exit_2(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err
