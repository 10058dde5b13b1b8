"""The SimCLR model card: template renders, metadata parses back, model-index validates; evaluations merge into
eval_results.json and the card; a local dataset path never becomes a Hub dataset id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_simclr.hub.card import build_model_card, eval_results, find_template, update_model_card
from hf_simclr.hub.records import dataset_names, write_eval_results

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
    assert "| kNN top-1 accuracy | 61.50 |" in text and "τ = 0.2" in text and "{{" not in text


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
    card = build_model_card("org/m", CONFIG, TRAINING, {"linear_top1": 70.0}, "CIFAR-10")
    reparsed = ModelCard(str(card), ignore_metadata_errors=False)
    assert reparsed.data.eval_results[0].dataset_name == "CIFAR-10"
    with pytest.raises(ValueError, match="model_index"):
        ModelCard("---\nmodel-index:\n- name: x\n  results:\n  - task: {}\n---\n", ignore_metadata_errors=False)


def test_results_merge_and_card_model_index(tmp_path):
    write_eval_results(tmp_path, "linear_eval", "Fashion", {"linear_top1": 0.5}, details={"epochs": 1})
    write_eval_results(tmp_path, "linear_eval", "Other", {"linear_top1": 0.7})
    write_eval_results(tmp_path, "linear_eval", "Fashion", {"linear_top1": 0.6, "knn_top1_k20": 0.4})
    entries = json.loads((tmp_path / "eval_results.json").read_text())["results"]
    assert [(e["dataset"], e["metrics"].get("linear_top1")) for e in entries] == [("Other", 0.7), ("Fashion", 0.6)]

    # a card as the trainer writes it names kNN metrics by their keys; those entries are replaced, not duplicated
    update_model_card(tmp_path, {"knn_top1_k20": 0.25, "linear_top1": 0.5}, "Fashion", model_name="m")
    update_model_card(tmp_path, {"knn_top1_k200": 0.3}, "Fashion")
    update_model_card(tmp_path, {"knn_top1_k20": 0.41, "linear_top1": 0.6}, "Fashion")
    card = ModelCard.load(tmp_path / "README.md")
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values == {
        "kNN top-1 accuracy (k=20)": 41.0,
        "Linear probe top-1 accuracy": 60.0,
        "kNN top-1 accuracy (k=200)": 30.0,
    }
    assert card.data.to_dict()["model-index"][0]["name"] == "m"
    assert card.text.count("## Evaluation results") == 1 and "| Linear probe top-1 accuracy | 60.00 |" in card.text


def test_a_local_dataset_is_named_by_its_folder_and_is_never_a_hub_id(tmp_path: Path) -> None:
    local = tmp_path / "org" / "imagenet"  # a path that reads like an org/name id
    local.mkdir(parents=True)
    assert dataset_names(str(local)) == ("imagenet", None)
    assert dataset_names("uoft-cs/cifar10") == ("uoft-cs/cifar10", "uoft-cs/cifar10")
    assert dataset_names(None) == ("Fashion-MNIST (embedded subset)", None)
    name, dataset_id = dataset_names(str(local))
    card = build_model_card("org/m", CONFIG, TRAINING, {"knn_top1_k20": 70.0}, name, dataset_id=dataset_id)
    assert card.data.datasets is None and str(tmp_path) not in str(card)
    assert card.data.eval_results[0].dataset_type == card.data.eval_results[0].dataset_name == "imagenet"
