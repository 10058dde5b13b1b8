"""The model card of a distilled student: what it is, which teacher it learnt from and how (the recipe), how to use
it, and its held-out results against the teacher (the results section of :mod:`hf_simclr.hub.card`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from ..hub import records
from ..hub.card import install_line, repository_url, update_model_card

TAGS = ["simclr", "simclrv2", "distillation", "image-classification"]


def recipe_rows(recipe: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The card's "Distillation" table: settings as recorded by ``scripts/distill.py``."""
    alpha = recipe["distillation_weight"]
    images = f"{recipe['num_train']:,} images of {dataset} ({recipe['train_split']} split)"
    if alpha == 1:
        loss = "the teacher's class distribution alone (no label)"
        images += ", all unlabelled"
    elif alpha == 0:
        loss = "the labels alone (the baseline distillation is compared with; no teacher)"
    else:
        labelled = recipe["num_labelled"]
        loss = f"{alpha:g} x distillation + {1 - alpha:g} x cross-entropy on the {labelled:,} labelled images"
    kind = "self-distillation: the teacher's architecture" if recipe["self_distillation"] else "another architecture"
    temperature = f"{recipe['temperature']:g}" + (" (not used: labels alone)" if alpha == 0 else "")
    return {
        "teacher": f"`{recipe['teacher']}`",
        "student": f"`{recipe['student']}` ({kind}), classifier on h",
        "training images": images,
        "loss": loss,
        "temperature": temperature,
        "labelled share": f"{100 * recipe['label_fraction']:g} %" if recipe.get("label_fraction") else None,
        "optimizer": "LARS (momentum 0.9, trust coefficient 0.001)",
        "learning rate": f"{recipe['learning_rate']:.4g} = {recipe['learning_rate_rule']}, B = "
        f"{recipe['global_batch_size']} (the global batch)",
        "weight decay": f"{recipe['weight_decay']:g}",
        "schedule": f"{recipe['warmup_epochs']:g} warm-up epochs, then cosine decay",
        "length": f"{recipe['steps']:,} steps ({recipe['epochs']:.4g} epochs)",
        "augmentation": f"the student: random resized crop ({100 * recipe['min_crop_scale']:g}-100 % of the area) and "
        "horizontal flip, as fine-tuning; the teacher: its own evaluation preprocessing",
        "image size": f"{recipe['image_size']} px",
    }


def write_distillation_card(folder: str | Path, recipe: Mapping[str, Any], dataset: str) -> Path:
    """Write ``folder/README.md`` for the student saved there, then its results section from
    ``eval_results.json``; returns the card's path."""
    folder = Path(folder)
    name = folder.resolve().name
    alpha = recipe["distillation_weight"]
    how = (
        f"trained on the labels alone, as the baseline of a distillation from `{recipe['teacher']}`"
        if alpha == 0
        else f"distilled from `{recipe['teacher']}` with SimCLRv2's third step (Chen et al. 2020, \"Big Self-"
        "Supervised Models are Strong Semi-Supervised Learners\"): it learnt the teacher's class distribution, "
        f"softened at temperature {recipe['temperature']:g}, on crops of {dataset} images"
    )
    table = "\n".join(f"| {key} | {value} |" for key, value in recipe_rows(recipe, dataset).items() if value)
    text = f"""
# {name}

An image classifier (`SimCLRForImageClassification`, backbone `{recipe["student"]}`) {how}.

## Use

```python
import hf_simclr  # {install_line()}
from transformers import pipeline

classify = pipeline("image-classification", model="{folder}")
print(classify("photo.jpg"))
```

Without hf_simclr installed, pass `trust_remote_code=True`: the model's code is saved with it. Images are
preprocessed by the image processor saved with the model (resize, centre crop to {recipe["image_size"]} px, normalise).

## Distillation

`scripts/distill.py` of [hf_simclr]({repository_url()}):

| Setting | Value |
|---|---|
{table}

## Evaluation results

Not evaluated yet.
"""
    data = ModelCardData(library_name="transformers", pipeline_tag="image-classification", tags=list(TAGS))
    ModelCard(f"---\n{data.to_yaml()}\n---\n{text}").save(folder / records.MODEL_CARD)
    return update_model_card(folder, model_name=name, pipeline_tag="image-classification")


__all__ = ["recipe_rows", "write_distillation_card"]
