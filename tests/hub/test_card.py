"""The SimCLR model card: template renders, metadata parses back, model-index validates; the card says what the run
did and is written from the folder's records, so evaluations merge and survive; a local dataset path never becomes a
Hub dataset id."""

from __future__ import annotations

import json
import re
from email.message import Message
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_simclr.hub import records
from hf_simclr.hub.card import (
    REPOSITORY_URL,
    build_model_card,
    eval_results,
    find_template,
    model_card_for_repo,
    repository_url,
    update_model_card,
    write_model_card,
)
from hf_simclr.hub.records import dataset_names, write_eval_results, write_json

CONFIG = {"model_type": "simclr", "backbone": "resnet18", "projection_dim": 32, "temperature": 0.2}

TRAINING = {"epochs": 10, "batch size": 256, "optimizer": "LARS", "learning rate": 0.3}


def test_template_is_found_in_the_checkout() -> None:
    path = find_template()
    assert path.parent.name == "model_cards" and "{{ card_data }}" in path.read_text()


def test_card_round_trips_through_readme(tmp_path: Path) -> None:
    card = build_model_card(
        "org/simclr-tiny",
        CONFIG,
        TRAINING,
        {"knn_top1": 61.5, "linear_top1": 70.25},
        "uoft-cs/cifar10",
        eval_split="test",
        feature_dim=512,
        augmentations="random resized crop",
        timm_repo="org/simclr-tiny-timm",
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data

    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-feature-extraction"
    assert data.tags == ["simclr", "self-supervised", "image-feature-extraction", "timm"]
    assert data.datasets == ["uoft-cs/cifar10"] and data.license == "apache-2.0"
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == data.model_name == "simclr-tiny"
    assert [(r.task_type, r.dataset_type, r.dataset_split, r.metric_type, r.metric_value) for r in results] == [
        ("image-classification", "uoft-cs/cifar10", "test", "accuracy", 61.5),
        ("image-classification", "uoft-cs/cifar10", "test", "accuracy", 70.25),
    ]
    assert [r.metric_name for r in data.eval_results] == ["kNN top-1 accuracy", "Linear probe top-1 accuracy"]

    text = loaded.text
    assert "import hf_simclr" in text and 'AutoModel.from_pretrained("org/simclr-tiny")' in text
    assert 'AutoModel.from_pretrained("org/simclr-tiny", trust_remote_code=True)' in text
    assert 'pipeline("image-feature-extraction", model="org/simclr-tiny"' in text and "pool=True" in text
    assert 'timm.create_model("hf-hub:org/simclr-tiny-timm"' in text
    assert "| optimizer | LARS |" in text and "| learning rate | 0.3 |" in text
    assert "| test | kNN top-1 accuracy | 61.5 |" in text and "τ = 0.2" in text and "{{" not in text


def test_list_results_and_a_card_without_results_or_dataset(tmp_path: Path) -> None:
    entries = eval_results(
        [{"metric": "knn_top5", "value": 88.0, "dataset": "imagenet-1k", "dataset_name": "ImageNet", "split": "val"}],
        dataset_name=None,
    )
    assert (entries[0].dataset_type, entries[0].dataset_name, entries[0].metric_name) == (
        "imagenet-1k",
        "ImageNet",
        "kNN top-5 accuracy",
    )
    card = build_model_card("simclr-local", CONFIG, {}, {}, None)
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert "model-index" not in loaded.data.to_dict() and loaded.data.datasets is None
    assert "Not evaluated yet." in loaded.text and "Not recorded." in loaded.text
    assert 'AutoModel.from_pretrained("simclr-local")' in loaded.text


def test_card_metadata_passes_the_hub_validation_rules() -> None:
    # ModelCard.validate needs huggingface.co; strict parsing is the part of its check that runs offline
    card = build_model_card("org/m", CONFIG, TRAINING, {"linear_top1": 70.0}, "CIFAR-10", dataset_id="uoft-cs/cifar10")
    reparsed = ModelCard(str(card), ignore_metadata_errors=False)
    assert reparsed.data.eval_results[0].dataset_name == "CIFAR-10"
    with pytest.raises(ValueError, match="model_index"):
        ModelCard("---\nmodel-index:\n- name: x\n  results:\n  - task: {}\n---\n", ignore_metadata_errors=False)


def test_results_merge_in_the_records_and_on_the_card(tmp_path):
    write_eval_results(tmp_path, "linear_eval", "Fashion", {"linear_top1": 0.5}, details={"epochs": 1})
    write_eval_results(tmp_path, "linear_eval", "Other", {"linear_top1": 0.7})
    write_eval_results(tmp_path, "linear_eval", "Fashion", {"linear_top1": 0.6, "knn_top1_k20": 0.4})
    entries = json.loads((tmp_path / "eval_results.json").read_text())["results"]
    assert [(e["dataset"], e["metrics"].get("linear_top1")) for e in entries] == [("Other", 0.7), ("Fashion", 0.6)]

    # results on a Hub dataset enter the model-index; those on local data only the card's table
    write_eval_results(tmp_path, "linear_eval", "org/data", {"knn_top1_k200": 0.3}, dataset_id="org/data")
    update_model_card(tmp_path, model_name="m")
    write_eval_results(tmp_path, "linear_eval", "org/data", {"knn_top1_k200": 0.35}, dataset_id="org/data")
    update_model_card(tmp_path, model_name="m")
    card = ModelCard.load(tmp_path / "README.md")
    assert [(r.dataset_type, r.metric_name, r.metric_value) for r in card.data.eval_results] == [
        ("org/data", "kNN top-1 accuracy (k=200)", 35.0)
    ]
    assert card.data.to_dict()["model-index"][0]["name"] == "m" and card.data.datasets == ["org/data"]
    assert card.text.count("## Evaluation results") == 1
    assert "| Fashion | test | Linear probe top-1 accuracy | 60 |" in card.text
    assert "| Other | test | Linear probe top-1 accuracy | 70 |" in card.text


def _finished_run(folder: Path, dataset: str | None, **results) -> Path:
    """A pretraining run's records, as scripts/pretrain.py leaves them."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / records.TRAINING_ARGS,
        {
            "dataset": dataset,
            "output_dir": str(folder),
            "preset": "demo",
            "augment": "demo",
            "epochs": 20,
            "image_size": 32,
        },
    )
    write_json(folder / "config.json", CONFIG)
    name, dataset_id = dataset_names(dataset)
    run = {"steps": 390, "learning_rate": 0.3, "loss": 5.123456, "dataset": name, "dataset_id": dataset_id}
    write_json(folder / records.RESULTS, {**run, "eval_split": "test", "feature_dim": 512, **results})
    return folder


def test_the_card_says_what_the_run_did(tmp_path):
    run = _finished_run(
        tmp_path / "run", "uoft-cs/cifar10", knn_top1_k20=0.7549999952316284, knn_top1_k20_random_init=0.3249999
    )
    card = write_model_card(run)
    text = str(card)
    # the demo preset's augmentations, which have no blur
    assert "random resized crop to 20-100 % of its area, horizontal flip, colour jitter of strength 0.5" in text
    assert "blur" not in text
    # numbers as the Hub shows them; an install line that works from this repository
    assert card.data.eval_results[0].metric_value == 75.5 and "| 75.5 |" in text and "75.49" not in text
    assert "| kNN top-1 (k=20) of the same encoder at random initialisation | 32.5 % |" in text
    assert "| final NT-Xent loss | 5.123 |" in text
    assert "pip install -e ." in text and "pip install hf-simclr" not in text
    # the model-index names the Hub dataset by its id
    index = card.data.to_dict()["model-index"][0]["results"][0]["dataset"]
    assert index == {"name": "uoft-cs/cifar10", "type": "uoft-cs/cifar10", "split": "test"}
    prose = re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))  # no parentheses doubled or nested
    assert ") (" not in prose and not re.search(r"\([^)]*\(", prose)


def test_a_card_written_again_keeps_every_evaluation(tmp_path):
    run = _finished_run(tmp_path / "run", None, knn_top1_k20=0.70)
    write_model_card(run)
    write_eval_results(run, "linear_eval", "Fashion-MNIST (embedded subset)", {"linear_top1": 0.81})
    update_model_card(run)
    write_model_card(run)  # e.g. the card rendered for a push
    text = (run / "README.md").read_text()
    assert "| Linear probe top-1 accuracy | 81 |" in text and "| kNN top-1 accuracy (k=20) | 70 |" in text
    # the embedded data has no Hub id: no model-index, whose dataset type must be one
    assert ModelCard.load(run / "README.md").data.eval_results is None and "model-index" not in text


def test_a_local_dataset_is_named_by_its_folder_and_is_never_a_hub_id(tmp_path: Path) -> None:
    local = tmp_path / "org" / "imagenet"  # a path that reads like an org/name id
    local.mkdir(parents=True)
    assert dataset_names(str(local)) == ("imagenet", None)
    assert dataset_names("uoft-cs/cifar10") == ("uoft-cs/cifar10", "uoft-cs/cifar10")
    assert dataset_names(None) == ("Fashion-MNIST (embedded subset)", None)
    assert dataset_names(str(local / "*.parquet")) == ("imagenet", None)
    name, dataset_id = dataset_names(str(local))
    card = build_model_card("org/m", CONFIG, TRAINING, {"knn_top1_k20": 70.0}, name, dataset_id=dataset_id)
    assert card.data.datasets is None and card.data.eval_results is None and str(tmp_path) not in str(card)
    assert "| imagenet |  | kNN top-1 accuracy (k=20) | 70 |" in card.text


def test_the_card_pushed_to_a_repo_names_the_repo(tmp_path):
    run = _finished_run(tmp_path / "outputs" / "simclr", "uoft-cs/cifar10", knn_top1_k20=0.7)
    write_model_card(run)
    assert f'AutoModel.from_pretrained("{run}")' in (run / "README.md").read_text()  # the local card: the folder
    pushed = ModelCard(model_card_for_repo(run, "org/simclr-r18", "org/simclr-r18-timm"))
    assert pushed.data.to_dict()["model-index"][0]["name"] == "simclr-r18" and "\n# simclr-r18\n" in pushed.text
    assert 'AutoModel.from_pretrained("org/simclr-r18")' in pushed.text and str(tmp_path) not in str(pushed)
    assert 'timm.create_model("hf-hub:org/simclr-r18-timm"' in pushed.text

    # any other card (here a fine-tuned model's) gets the repo's name as title and model-index name
    finetuned = tmp_path / "finetuned"
    details = {"label_fraction": 0.1, "num_train": 100, "base_model": "simclr"}
    write_eval_results(
        finetuned, "finetune", "org/data", {"finetune_top1": 0.9}, dataset_id="org/data", details=details
    )
    update_model_card(finetuned, pipeline_tag="image-classification")
    assert ModelCard.load(finetuned / "README.md").data.model_name == "finetuned"
    pushed = ModelCard(model_card_for_repo(finetuned, "org/simclr-r18-10pct"))
    assert pushed.data.model_name == "simclr-r18-10pct" and "\n# simclr-r18-10pct\n" in pushed.text
    assert (
        "| Image classification (fine-tuned end to end, 10% of the labels) | org/data | test | Top-1 accuracy | 90 |"
        in (pushed.text)
    )


def test_a_card_of_its_own_keeps_its_title_and_quotes_the_repo_instead_of_the_folder(tmp_path, monkeypatch):
    folder = tmp_path / "converted" / "r50"  # e.g. a converted official checkpoint, whatever wrote its card
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    snippets = "AutoModel.from_pretrained(\"converted/r50\")\nAutoModel.from_pretrained('./converted/r50/')\n"
    (folder / "README.md").write_text(f"---\nmodel_name: r50\n---\n\n# SimCLRv2 R50 1x\n\n```python\n{snippets}```\n")
    pushed = ModelCard(model_card_for_repo(folder, "org/simclr-v2-r50"))
    assert "\n# SimCLRv2 R50 1x\n" in pushed.text and pushed.data.model_name == "simclr-v2-r50"
    assert 'from_pretrained("org/simclr-v2-r50")' in pushed.text
    assert "from_pretrained('org/simclr-v2-r50')" in pushed.text and "converted/r50" not in pushed.text


def test_the_card_warns_when_pretraining_did_not_beat_random_initialisation(tmp_path):
    worse = _finished_run(tmp_path / "worse", None, knn_top1_k20=0.40, knn_top1_k20_random_init=0.45)
    text = str(write_model_card(worse))
    assert "**Warning:** pretraining did not beat random initialisation" in text
    assert "kNN top-1 accuracy (k=20) 40 % against 45 %" in text
    better = _finished_run(tmp_path / "better", None, knn_top1_k20=0.80, knn_top1_k20_random_init=0.45)
    assert "Warning" not in str(write_model_card(better))


def test_the_card_explains_the_base_and_the_scaled_learning_rate(tmp_path):
    run = _finished_run(tmp_path / "run", None, global_batch_size=512, learning_rate=0.6)
    args = json.loads((run / records.TRAINING_ARGS).read_text())
    write_json(run / records.TRAINING_ARGS, {**args, "learning_rate": 0.3, "lr_scaling": "linear"})
    text = str(write_model_card(run))
    assert "| base learning rate (`--learning_rate`) | 0.3 |" in text
    assert "| learning rate | 0.6 = 0.3 x B / 256, B = 512 (the global batch; `--lr_scaling linear`) |" in text


def test_the_card_says_where_to_get_hf_simclr(tmp_path):
    text = str(write_model_card(_finished_run(tmp_path / "run", None)))
    assert "`pip install git+https://github.com/hf-simclr/hf_simclr`" in text


def test_the_repository_url_comes_from_the_installed_metadata_else_from_pyproject(monkeypatch):
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["urls"]["Repository"] == REPOSITORY_URL
    fork = Message()
    fork["Project-URL"] = "Repository, https://example.org/fork/hf_simclr"
    monkeypatch.setattr("importlib.metadata.metadata", lambda name: fork)
    assert repository_url() == "https://example.org/fork/hf_simclr"

    def not_installed(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr("importlib.metadata.metadata", not_installed)
    assert repository_url() == REPOSITORY_URL
