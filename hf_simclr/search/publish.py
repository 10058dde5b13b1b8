"""An embedded dataset on the Hub: its dataset card (which names the model) and the push of its folder as a dataset
repo in one commit. Nothing pushed names a local path: the model and the source dataset go up by their Hub ids or,
when local, by their names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from ..hub.card import install_line
from ..hub.push import _upload, check_repo_id
from .embeddings import CARD, DATA_DIR, INFO, read_info

TAGS = ["embeddings", "image-feature-extraction", "simclr", "faiss"]


def _hub_link(name: str, hub_id: str | None, kind: str = "") -> str:
    return f"[{name}](https://huggingface.co/{kind}{hub_id})" if hub_id else f"`{name}`"


def _model_id(info: dict[str, Any]) -> str | None:
    """The model's Hub id when it is one (a local folder has none)."""
    return info["model_name"] if info.get("model_name") == info.get("model") else None


def dataset_card(info: dict[str, Any], repo_id: str | None = None) -> DatasetCard:
    """The card of an embedded dataset from its ``embedding_info.json``; ``repo_id`` is where it is pushed."""
    split, model_id = info["split"], _model_id(info)
    data = DatasetCardData(
        tags=list(TAGS),
        task_categories=["image-feature-extraction"],
        source_datasets=[info["dataset_id"]] if info.get("dataset_id") else None,
        configs=[{"config_name": "default", "data_files": [{"split": split, "path": f"{DATA_DIR}/{split}-*.parquet"}]}],
    )
    model = _hub_link(info["model_name"], model_id)
    source = _hub_link(info["dataset_name"], info.get("dataset_id"), "datasets/")
    config = f", configuration `{info['dataset_config']}`" if info.get("dataset_config") else ""
    label = f"`{info['label_column']}` (the row's label), " if info.get("label_column") else ""
    where = repo_id or "path/to/this/folder"
    failed = (
        f" {info['num_failed']:,} images could not be read; `failed_images.json` lists their rows and errors."
        if info.get("num_failed")
        else ""
    )
    preprocessing = info.get("preprocessing") or {}
    how = (
        f"resized and centre-cropped to {preprocessing['size']} px as its image processor does"
        if preprocessing.get("fast_path")
        else "through its image processor"
    )
    text = f"""---
{data.to_yaml()}
---

# Image embeddings of {info["dataset_name"]} by {info["model_name"]}

The {info["num_embedded"]:,} images of the `{split}` split of {source}{config}, embedded by the image encoder {model}
({how}): one row per image with `index` (the row's position in the split), {label}and `embedding`, the
model's pooled output *h* ({info.get("embedding_dim")} numbers), L2-normalised, so that the inner product of two
embeddings is their cosine similarity. The images themselves are not copied: row `index` of the source split is the
image.{failed}

## Find similar images

With `hf_simclr` installed ({install_line()}, with the `search` extra):

```bash
python scripts/search_images.py --index {where} --query photo.jpg -k 8 --grid neighbours.png
```

With `datasets` and FAISS alone:

```python
import faiss
import numpy as np
from datasets import load_dataset

embeddings = load_dataset("{where}", split="{split}")
embeddings.add_faiss_index("embedding", metric_type=faiss.METRIC_INNER_PRODUCT)
query = np.asarray(embeddings[0]["embedding"], dtype=np.float32)  # or a new image's unit-length embedding
scores, neighbours = embeddings.get_nearest_examples("embedding", query, k=8)
```

Made with `scripts/embed_dataset.py` of hf_simclr.
"""
    return DatasetCard(text)


def write_dataset_card(folder: str | Path, repo_id: str | None = None) -> Path:
    """``README.md`` of an embedded dataset's folder from its ``embedding_info.json``."""
    path = Path(folder) / CARD
    dataset_card(read_info(folder), repo_id).save(path)
    return path


def public_info(info: dict[str, Any]) -> dict[str, Any]:
    """``embedding_info.json`` as pushed: the model and dataset by Hub id or name, never a local path."""
    return {**info, "model": info["model_name"], "dataset": info.get("dataset_id") or info["dataset_name"]}


def push_embeddings(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Push an embedded dataset's folder to the Hub dataset repo ``repo_id`` in one commit; returns the commit URL.

    The card goes up naming ``repo_id``; a failed upload is a :class:`hf_simclr.errors.HubPushError` that keeps
    every local file and names the command that retries it."""
    check_repo_id(repo_id)
    folder = Path(folder)
    info = read_info(folder)
    replaced = {
        INFO: (json.dumps(public_info(info), indent=2) + "\n").encode(),
        CARD: str(dataset_card(info, repo_id)).encode(),
    }
    retry = f"python scripts/embed_dataset.py ... --push_to_hub {repo_id} (the same command: nothing is embedded again)"
    message = f"Upload embeddings of {info['dataset_name']} by {info['model_name']}"
    return _upload(folder, repo_id, private, None, message, token, retry, replaced, repo_type="dataset")


__all__ = ["dataset_card", "public_info", "push_embeddings", "write_dataset_card"]
