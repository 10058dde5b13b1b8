"""Shared fixtures: tiny SimCLR models and fresh Python processes with a controlled environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hub_server import hub_client, hub_server  # noqa: F401 - local Hub fixtures

import hf_simclr  # noqa: F401 - registers the Auto classes
from hf_simclr import SimCLRConfig, SimCLRModel
from hf_simclr.export import save_model

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls run fastest, and identically from run to run, on one thread (the machine may be shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides) -> SimCLRConfig:
    """A small backbone at a small resolution: the same code paths as ResNet-50 at 224 px, in milliseconds."""
    kwargs = dict(backbone="resnet18", image_size=64, projection_hidden_dim=64, projection_dim=32)
    kwargs.update(overrides)
    return SimCLRConfig(**kwargs)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config())
    # move BN statistics off their initial values so a load that ignores buffers would be caught
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64), torch.randn(4, 3, 64, 64))
    return save_model(model.eval(), tmp_path_factory.mktemp("simclr-tiny"))


def write_labelled_subset(folder: Path, train_per_class: int, test_per_class: int) -> Path:
    """A folder of train/test parquet splits holding the first images of each class of the embedded data."""
    from hf_simclr.data import load_default_splits

    splits = load_default_splits()
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = torch.tensor(splits[split]["label"])
        keep = torch.cat([(labels == c).nonzero().flatten()[:per_class] for c in range(10)]).sort().values
        splits[split].select(keep.tolist()).to_parquet(str(folder / f"{split}.parquet"))
    return folder


def run_python(code: str, *, block_hf_simclr: bool = False, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run `code` in a fresh interpreter and return the JSON object it prints on its last line.

    With `block_hf_simclr`, importing `hf_simclr` fails in that process, as on a machine without the package.
    """
    prelude = "import sys\n"
    if block_hf_simclr:
        prelude += "sys.modules['hf_simclr'] = None\n"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", **(env or {})}
    full_env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or "/",
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
