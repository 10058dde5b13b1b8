"""The entry point every script shares: errors told apart by type, one argument system with one set of dataset flags."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from helpers import SCRIPTS, subprocess_env

from hf_simclr.cli import run_cli
from hf_simclr.data import DatasetArguments
from hf_simclr.distillation.arguments import parse_distill_args
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
    "parse, required",
    [
        (pretrain_arguments.parse_args, []),
        (linear_eval.parse_args, ["--model", "org/model", "--no_plots"]),
        (finetune.parse_args, ["--model", "org/model", "--output_dir", "finetuned"]),
        (segmentation.parse_args, ["--model", "org/model", "--output_dir", "segmentation"]),
        (parse_distill_args, ["--teacher", "org/teacher", "--student", "resnet18", "--output_dir", "student"]),
    ],
    ids=["pretrain", "linear_eval", "finetune", "finetune_segmentation", "distill"],
)
def test_every_script_takes_the_same_dataset_flags(parse, required):
    defaults = parse(required)
    for field in dataclasses.fields(DatasetArguments):
        assert getattr(defaults, field.name) == field.default, field.name
    flags = ["--dataset", "org/data", "--dataset_config", "c", "--image_column", "img", "--label_column", "y"]
    flags += ["--train_split", "tr", "--test_split", "held"]
    args = parse([*required, *flags])
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


MISSING_DATASET_RUNS = """
import contextlib, io, json, runpy, sys
scripts = sys.argv[1]
required = {
    "pretrain": [],
    "linear_eval": ["--model", "org/model"],
    "finetune": ["--model", "org/model", "--output_dir", "finetuned"],
    "show_augmentations": [],
}
results = []
for name, extra in required.items():
    for dataset in ("./nope", "data/x", "data/*.parquet", "nope.parquet"):
        sys.argv = [f"{scripts}/{name}.py", "--dataset", dataset, *extra]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(sys.argv[0], run_name="__main__")  # as `python scripts/<name>.py ...`
            except SystemExit as exit:
                code = exit.code
        imported = [module for module in ("torch", "datasets", "pyarrow", "transformers") if module in sys.modules]
        results.append([name, dataset, code, stderr.getvalue(), imported])
print(json.dumps(results))
"""


@pytest.mark.slow
def test_a_missing_local_dataset_fails_in_one_line_before_torch_or_the_data_libraries_load(tmp_path):
    (tmp_path / "data").mkdir()  # "data/x" is then a path of this folder, not the Hub repository data/x
    result = subprocess.run(
        [sys.executable, "-c", MISSING_DATASET_RUNS, str(SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=subprocess_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(runs) == 16
    for name, dataset, code, stderr, imported in runs:
        assert code == 2 and stderr.startswith(f"error: --dataset {dataset}: ") and stderr.count("\n") == 1, stderr
        assert f"(relative to {tmp_path})" in stderr, stderr
        assert imported == [], f"{name} --dataset {dataset} imported {imported} before failing"
