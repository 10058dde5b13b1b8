"""The entry point every script shares: errors told apart by type, one argument system with one set of dataset flags."""

from __future__ import annotations

import dataclasses

import pytest

from hf_simclr.cli import run_cli
from hf_simclr.data import DatasetArguments
from hf_simclr.errors import HubPushError, InvalidModelFolderError, NonFiniteLossError, RunFailure, UsageError
from hf_simclr.evaluation import finetune, linear_eval, segmentation
from hf_simclr.training import arguments as pretrain_arguments


def _raise(error: BaseException):
    def main() -> None:
        raise error

    return main


def test_errors_are_told_apart_by_type(capsys):
    assert run_cli(lambda: None) == 0
    cases = [
        (UsageError("bad flag"), 2),
        (InvalidModelFolderError("not a model"), 2),
        (ValueError("invalid config value"), 2),  # raised by the model files saved with a checkpoint, or a library
        (FileNotFoundError("no such folder"), 2),
        (HubPushError("upload failed;\n retry with: ..."), 1),
        (NonFiniteLossError("the loss became non-finite"), 1),
    ]
    for error, code in cases:
        assert run_cli(_raise(error)) == code, error
        assert capsys.readouterr().err == f"error: {' '.join(str(error).split())}\n"
    assert issubclass(UsageError, ValueError) and issubclass(RunFailure, RuntimeError)


def test_other_errors_keep_their_traceback_whatever_their_name():
    class HubPushError(RuntimeError):  # the name of a run failure, but not the type: a bug, not a message
        pass

    for error in (HubPushError("x"), KeyError("x"), RuntimeError("x")):
        with pytest.raises(type(error)):
            run_cli(_raise(error))


@pytest.mark.parametrize(
    "module, required",
    [
        (pretrain_arguments, []),
        (linear_eval, ["--model", "org/model", "--no_plots"]),
        (finetune, ["--model", "org/model", "--output_dir", "finetuned"]),
        (segmentation, ["--model", "org/model", "--output_dir", "segmentation"]),
    ],
)
def test_every_script_takes_the_same_dataset_flags(module, required):
    defaults = module.parse_args(required)
    for field in dataclasses.fields(DatasetArguments):
        assert getattr(defaults, field.name) == field.default, field.name
    flags = ["--dataset", "org/data", "--dataset_config", "c", "--image_column", "img", "--label_column", "y"]
    flags += ["--train_split", "tr", "--test_split", "held"]
    args = module.parse_args([*required, *flags])
    assert (args.dataset, args.dataset_config, args.image_column, args.label_column) == ("org/data", "c", "img", "y")
    assert (args.train_split, args.eval_split) == ("tr", "held")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epoch", "3"], "unrecognized arguments: --epoch"),  # no abbreviations: a typo is an error
        (["--epochs", "three"], "invalid int value: 'three'"),
    ],
)
def test_a_flag_mistake_is_one_line_and_exit_code_2(argv, message, capsys):
    assert run_cli(lambda: pretrain_arguments.parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
