"""scripts/pretrain.py's arguments: bad input is one line and exit code 2 before anything is written, --help explains
every flag and what each preset sets, and a JSON or YAML file works in place of flags."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import PRETRAIN, TINY_PRETRAIN, run_pretrain, subprocess_env

from hf_simclr.cli import run_cli
from hf_simclr.errors import UsageError
from hf_simclr.training import pretrain
from hf_simclr.training.arguments import build_parser, parse_args
from hf_simclr.training.components import build_model


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge"], "--preset must be one of"),
        (["--per_device_batch_size", "0"], "--per_device_batch_size must be >= 1"),
        (["--push_to_hub"], "--hub_model_id"),
        (["--push_to_hub", "--hub_model_id", "org/bad name!"], "is not a repo id"),
        (["--image_column", "img"], "image column 'img' not found"),
        (["--dataset", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--per_device_batch_size", "4096"], "fewer than one global batch"),
        (["--per_device_batch_size", "1"], "at least 2 images"),
        (["--backbone", "resnet_9000"], "not a timm model name"),
        (["--temperature", "0"], "--temperature must be in"),
        (["--image_size", "1000000000"], "--image_size must be <= 4096"),
        (["--dataset", "missing/data/train"], "--dataset missing/data/train: no such file or folder"),
        (["--label_column", "category"], "--label_column category: the kNN monitor cannot run"),
        (["--backbone_kwargs", '{"checkpoint_path": "x.pth"}'], "must not set 'checkpoint_path'"),
        (["--backbone_kwargs", "norm_layer=groupnorm"], "--backbone_kwargs must be a JSON object"),
        (["--backbone_kwargs", '{"norm_layer": "groupnorm"}'], "does not build with --backbone_kwargs"),
        (["--backbone_kwargs", '{"cardinality": 2}'], "BasicBlock only supports cardinality of 1"),
        (["--ddp_timeout", "0"], "--ddp_timeout must be >= 1"),
        (["--preset", "cifar", "--timm_export"], "--timm_export cannot export a --cifar_stem encoder"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, small_dataset, tmp_path, capsys):
    base = ["--dataset", str(small_dataset / "train.parquet")] if "--dataset" not in args else []
    argv = [*TINY_PRETRAIN, *base, *args, "--output_dir", str(tmp_path / "out")]
    assert run_cli(lambda: pretrain(parse_args(argv))) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_script_exit_code_2(tmp_path):
    result = run_pretrain(["--temperature", "-1", "--output_dir", str(tmp_path / "out")], check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: --temperature must be in (0, 10], got -1.0"


@pytest.mark.slow
def test_output_dir_of_another_run_needs_overwrite(small_dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    result = run_pretrain(
        [*TINY_PRETRAIN, "--dataset", str(small_dataset / "train.parquet"), "--output_dir", str(out)], check=False
    )
    assert result.returncode == 2 and "--overwrite_output_dir" in result.stderr.strip().splitlines()[-1]
    assert [p.name for p in out.iterdir()] == ["config.json"]


@pytest.mark.slow
def test_help_explains_the_flags():
    result = subprocess.run([sys.executable, PRETRAIN, "--help"], capture_output=True, text=True, env=subprocess_env())
    assert result.returncode == 0
    for flag in ("--lr_scaling", "--resume_from_checkpoint", "--preset", "--grad_cache_chunk", "--report_to"):
        assert flag in result.stdout


def test_a_json_or_yaml_file_works_in_place_of_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.parquet").touch()  # a local --dataset must exist when the flags are read
    flags = ["--dataset", "data/train.parquet", "--epochs", "3", "--timm_export", "--test_split", "validation"]
    settings = {"dataset": "data/train.parquet", "epochs": 3, "timm_export": True, "eval_split": "validation"}
    (tmp_path / "run.json").write_text(json.dumps(settings))
    (tmp_path / "run.yaml").write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items()))
    expected = parse_args(flags)
    assert expected.eval_split == "validation"  # --test_split is another name of --eval_split
    assert parse_args([str(tmp_path / "run.json")]) == expected
    assert parse_args([str(tmp_path / "run.yaml")]) == expected


def test_backbone_kwargs_from_a_flag_or_a_config_file():
    flag = parse_args(["--backbone", "test_resnet", "--backbone_kwargs", '{"norm_layer": "groupnorm1"}'])
    (args,) = build_parser().parse_dict({"backbone": "test_resnet", "backbone_kwargs": {"norm_layer": "groupnorm1"}})
    assert flag.resolved().backbone_kwargs == args.resolved().backbone_kwargs == {"norm_layer": "groupnorm1"}
    assert parse_args([]).resolved().backbone_kwargs == {}


def test_a_config_file_with_an_unknown_key_is_one_line_and_exit_code_2(tmp_path, capsys):
    (tmp_path / "run.json").write_text(json.dumps({"epochs": 3, "epoch": 4}))
    assert run_cli(lambda: pretrain(parse_args([str(tmp_path / "run.json")]))) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "'epoch'" in line
    assert not (tmp_path / "outputs").exists()


def test_help_shows_what_each_preset_sets():
    text = " ".join(build_parser().format_help().split())
    assert "passes over the training data (default from --preset: demo=10, cifar=1000, imagenet=100)" in text
    assert "NT-Xent temperature (default from --preset: demo=0.2, cifar=0.5, imagenet=0.1)" in text
    assert "(default: None)" not in text and "--seed SEED seed of initialisation" in text


@pytest.mark.parametrize(
    "leftovers, message, advice",
    [
        (
            ["training_args.json", "checkpoints/step_00000004/x"],
            "holds an unfinished run (last checkpoint: step_",
            "pass --resume_from_checkpoint latest to continue it",
        ),
        (
            ["training_args.json"],
            "holds another run, which stopped before its first checkpoint (nothing to resume)",
            "pass --resume_from_checkpoint latest or --overwrite_output_dir to start it afresh",
        ),
        (["training_args.json", "results.json"], "holds a finished run (4 steps)", None),
        (["config.json"], "holds another run's saved model", None),
    ],
)
def test_an_occupied_output_dir_says_what_it_holds_and_offers_resume_only_when_possible(
    leftovers, message, advice, tmp_path
):
    out = tmp_path / "out"
    for name in leftovers:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text('{"steps": 4}')
    args = parse_args([*TINY_PRETRAIN, "--output_dir", str(out)]).resolved()
    with pytest.raises(UsageError, match="--overwrite_output_dir") as error:
        args.check_output_dir(num_processes=1)
    assert message in str(error.value)
    if advice is None:  # a finished run or a saved model: nothing goes on from there, so no resume flag is offered
        assert "--resume_from_checkpoint" not in str(error.value)
    else:
        assert advice in str(error.value)


def test_cifar_preset_uses_the_cifar_stem():
    assert parse_args(["--preset", "cifar"]).resolved().cifar_stem is True
    assert parse_args(["--preset", "cifar", "--cifar_stem", "false"]).resolved().cifar_stem is False
    assert parse_args(["--cifar_stem"]).resolved().cifar_stem is True
    assert parse_args(["--preset", "imagenet"]).resolved().cifar_stem is False


def test_the_simclr_v2_head_from_the_command_line():
    def head(*flags: str) -> list[str]:
        args = parse_args(["--backbone", "resnet18", *flags]).resolved()
        model = build_model(args, 1, torch.device("cpu"))
        return [f"{type(m).__name__}{getattr(m, 'out_features', '')}" for m in model.projection_head]

    # the official v2 head: Dense (no bias) + BN + ReLU twice, then Dense + BN with a scale and no centre; hidden
    # width the encoder's (512 for a ResNet-18) unless given
    v2 = ["Linear512", "BatchNorm1d", "ReLU"] * 2 + ["Linear128", "BatchNorm1dNoCentre"]
    assert head("--projection_layers", "3", "--projection_batch_norm") == v2
    assert head("--projection_batch_norm") == ["Linear512", "BatchNorm1d", "ReLU", "Linear128", "BatchNorm1dNoCentre"]
    assert head("--projection_hidden_dim", "2048") == ["Linear2048", "ReLU", "Linear128"]


def test_the_evaluation_resolution_comes_with_the_presets_image_size():
    def sizes(*flags: str) -> tuple[int, int | None]:
        args = parse_args(list(flags)).resolved()
        return args.image_size, args.eval_image_size

    assert sizes() == (32, 44)  # the demo recipe tests above its training resolution
    assert sizes("--image_size", "64") == (64, None)  # another size: evaluated at that size
    assert sizes("--eval_image_size", "40") == (32, 40)
    assert sizes("--preset", "cifar") == (32, None) and sizes("--preset", "imagenet") == (224, None)
