"""scripts/finetune.py trains as the papers and the official code (google-research/simclr@383d414) fine-tune: each
default pinned to the official value, chosen from the model's config, overridden by flags; a classifier is reused
only when asked for."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import tiny_config, write_labelled_subset
from timm.optim import Lars

from hf_simclr import SimCLRForImageClassification, SimCLRModel
from hf_simclr.cli import run_cli
from hf_simclr.data import load_default_splits
from hf_simclr.evaluation.finetune import build_finetune_optimizer, finetune, load_model_to_finetune, parse_args
from hf_simclr.evaluation.finetune_recipe import finetune_recipe, is_simclr_v2
from hf_simclr.hub.export import save_model

pytestmark = pytest.mark.usefixtures("one_thread")
V2 = dict(projection_layers=3, projection_batch_norm=True)
NAMES = load_default_splits()["train"].features["label"].names


def recipe_of(config, *flags: str):
    return finetune_recipe(config, parse_args(["--model", "m", "--output_dir", "out", *flags]))


def test_simclrv2_models_fine_tune_with_the_official_v2_recipe():
    config = tiny_config(**V2)
    assert is_simclr_v2(config) and not is_simclr_v2(tiny_config())
    for fraction in ("0.01", "0.1"):
        recipe = recipe_of(config, "--label_fraction", fraction)
        # README.md:160-161: --optimizer=lars --learning_rate=0.005 --learning_rate_scaling=sqrt --weight_decay=0
        assert recipe.optimizer == "lars" and recipe.weight_decay == 0
        assert math.isclose(recipe.learning_rate(1024), 0.005 * math.sqrt(1024))  # the paper's 0.16 at B = 1024
        # README.md:166 --ft_proj_selector=1: the classifier on the first projection-head layer
        assert recipe.classifier_projection_layers == 1
        # README.md:158 --zero_init_logits_layer=True
        assert recipe.classifier_init == "zeros" and not recipe.reuse_classifier
    # the paper (section 3): from the input of the projection head (h) with all the labels
    assert recipe_of(config, "--label_fraction", "1.0").classifier_projection_layers == 0


def test_other_models_fine_tune_with_simclrs_recipe():
    recipe = recipe_of(tiny_config(), "--label_fraction", "0.1")
    # SimCLR appendix B.5: Nesterov momentum 0.9, 0.05 x B / 256, no weight decay
    assert (recipe.recipe, recipe.optimizer, recipe.weight_decay) == ("simclr_v1", "momentum", 0)
    assert math.isclose(recipe.learning_rate(4096), 0.8)  # the paper's 0.8 at B = 4096
    # model_util.py:130-134: the linear layer's kernel initialiser is random_normal(stddev=0.01); on h, or where the
    # model's own config places it
    assert recipe.classifier_init == "normal" and recipe.classifier_projection_layers == 0
    assert recipe_of(tiny_config(classifier_projection_layers=1)).classifier_projection_layers == 1


def test_linear_evaluation_is_the_official_one_for_every_model():
    for config in (tiny_config(), tiny_config(**V2)):
        recipe = recipe_of(config, "--freeze_encoder", "--label_fraction", "0.1")
        # README.md:136-143: --optimizer=momentum (Nesterov: model_util.py:88-90) --learning_rate=0.1 (linear
        # scaling, run.py:46-48) --weight_decay=1e-6 --zero_init_logits_layer=True, the head on h
        assert (recipe.recipe, recipe.optimizer, recipe.weight_decay) == ("linear_eval", "momentum", 1e-6)
        assert math.isclose(recipe.learning_rate(256), 0.1) and recipe.classifier_init == "zeros"
        assert recipe.classifier_projection_layers == 0


def test_flags_override_the_recipe(capsys):
    recipe = recipe_of(tiny_config(), "--recipe", "simclr_v2", "--label_fraction", "0.1")
    assert (recipe.optimizer, recipe.classifier_projection_layers) == ("lars", 1)  # the v1 head's first layer
    recipe = recipe_of(
        tiny_config(**V2),
        *"--optimizer momentum --learning_rate 0.3 --weight_decay 1e-4 --classifier_init normal".split(),
        *"--classifier_projection_layers 2".split(),
    )
    assert (recipe.optimizer, recipe.learning_rate(4096), recipe.weight_decay) == ("momentum", 0.3, 1e-4)
    assert (recipe.classifier_init, recipe.classifier_projection_layers) == ("normal", 2)
    assert "0.3 (--learning_rate)" in recipe.details(64)["learning_rate_rule"]
    no_head = tiny_config(projection_layers=0)
    for flags, message in (
        (["--recipe", "simclr_v2", "--label_fraction", "0.1"], "projection head of 0 layers"),
        (["--optimizer", "adam"], "--optimizer must be one of lars, momentum"),
        (["--recipe", "simclr_v2", "--freeze_encoder"], "--freeze_encoder is linear evaluation"),
    ):
        assert run_cli(lambda flags=flags: recipe_of(no_head, *flags)) == 2
        assert message in capsys.readouterr().err


def test_lars_keeps_the_classifier_biases_and_batchnorm_out_of_adaptation_and_decay():
    model = SimCLRForImageClassification(tiny_config(**V2, classifier_projection_layers=1, num_labels=3))
    recipe = recipe_of(model.config, "--label_fraction", "0.1", "--weight_decay", "1e-5")
    optimizer = build_finetune_optimizer(model, recipe, lr=0.1)
    adapted, plain = optimizer.param_groups
    assert isinstance(optimizer, Lars) and adapted["always_adapt"] and not plain["always_adapt"]
    assert (adapted["weight_decay"], plain["weight_decay"]) == (1e-5, 0.0)
    in_plain = {id(p) for p in plain["params"]}
    assert id(model.classifier.weight) in in_plain and id(model.classifier.bias) in in_plain
    assert id(model.encoder.conv1.weight) not in in_plain and id(model.encoder.bn1.weight) in in_plain


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_labelled_subset(tmp_path_factory.mktemp("data"), 4, 2)


def test_a_v2_model_is_fine_tuned_with_the_v2_recipe_and_the_card_says_so(data, tmp_path):
    model = save_model(SimCLRModel(tiny_config(**V2)), tmp_path / "v2")
    out = tmp_path / "finetuned"
    argv = ["--model", str(model), "--dataset", str(data), "--output_dir", str(out), "--label_fraction", "0.5"]
    settings = "--epochs 1 --per_device_batch_size 16 --num_workers 0".split()
    assert run_cli(lambda: finetune(parse_args([*argv, *settings]))) == 0
    details = json.loads((out / "eval_results.json").read_text())["results"][0]["details"]
    assert details["recipe"] == "simclr_v2" and details["optimizer"] == "lars"
    assert math.isclose(details["learning_rate"], 0.005 * math.sqrt(16)) and details["weight_decay"] == 0
    assert details["classifier_projection_layers"] == 1 and details["classifier_init"] == "zeros"
    card = (out / "README.md").read_text()
    assert "SimCLRv2 fine-tuning: LARS (momentum 0.9, trust coefficient 0.001), learning rate 0.02 = 0.005 x" in card
    assert "no weight decay" in card and "the classifier on projection-head layer 1, zero-initialised" in card


def test_a_linear_evaluation_classifier_on_h_is_never_silently_the_start_of_one_on_the_head(tmp_path, capsys):
    """A released v2 checkpoint's linear classifier on h (2048 inputs) has the shape of one on the first head layer
    of a 1x network (2048 wide): loading alone would start the new classifier from it."""
    config = tiny_config(**V2, projection_hidden_dim=None, num_labels=10, id2label=dict(enumerate(NAMES)))
    released = SimCLRForImageClassification(config)
    torch.nn.init.constant_(released.classifier.weight, 0.5)
    # as a converted release: the encoder, the whole projection head and the linear classifier on h
    weights = {**SimCLRModel(config).state_dict(), **released.state_dict()}
    folder = save_model(released, tmp_path / "released", state_dict=weights)

    def load(*flags: str):
        argv = ["--model", str(folder), "--output_dir", str(tmp_path / "out"), "--label_fraction", "0.1", *flags]
        return load_model_to_finetune(parse_args(argv), NAMES)

    model, recipe = load()
    assert recipe.classifier_projection_layers == 1
    assert model.classifier.weight.shape == released.classifier.weight.shape and not model.classifier.weight.any()
    said = capsys.readouterr().out
    assert "the classifier of --model (on h) is not reused: a new one on projection-head layer 1" in said
    assert run_cli(lambda: load("--reuse_classifier")) == 2
    error = capsys.readouterr().err
    assert "sits on h, this run places it on projection-head layer 1" in error, error
    model, _ = load("--reuse_classifier", "--classifier_projection_layers", "0")  # asked for, where it was trained
    assert torch.equal(model.classifier.weight, released.classifier.weight)


def test_a_head_layer_the_checkpoint_lacks_is_refused_not_left_random(tmp_path, capsys):
    folder = save_model(SimCLRForImageClassification(tiny_config(**V2, num_labels=10)), tmp_path / "no-head")
    argv = ["--model", str(folder), "--output_dir", str(tmp_path / "out"), "--label_fraction", "0.1"]
    assert run_cli(lambda: load_model_to_finetune(parse_args(argv), NAMES)) == 2
    assert "has no weights for the projection-head layers the classifier would sit on" in capsys.readouterr().err
