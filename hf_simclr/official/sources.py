"""Reading a source of official SimCLR weights: a TensorFlow checkpoint, a lightly-ai `.pth` copy or its Hub repo.

Whatever the source, the result is the same: the network found in it and its tensors under hf_simclr's state-dict
keys, plus what was checked on the way, for the model card.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError, SourceDownloadError
from .architecture import OfficialArchitecture
from .pytorch_copies import load_pytorch_file, map_pytorch_copy
from .tf_checkpoint import TFCheckpoint, resolve_checkpoint_prefix
from .tf_mapping import map_tf_checkpoint

__all__ = ["SourceWeights", "read_source"]

_PYTORCH_SUFFIXES = (".pth", ".pt", ".pth.tar")


@dataclass
class SourceWeights:
    """The weights of a source under hf_simclr's keys (`encoder.*`, `projection_head.*`, `classifier.*`)."""

    description: str  # what the user passed, resolved: a checkpoint prefix, a file, or "repo@file"
    kind: str  # "tensorflow" or "pytorch"
    architecture: OfficialArchitecture
    tensors: dict[str, torch.Tensor]
    step: int | None = None
    verified: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read_tensorflow(path: str | Path) -> SourceWeights:
    checkpoint = TFCheckpoint(path)
    shapes = {name: entry.shape for name, entry in checkpoint.entries.items()}
    architecture, sources, skipped = map_tf_checkpoint(shapes)
    tensors = {}
    for source in sources:
        tensors[source.key] = torch.from_numpy(source.transform(checkpoint.read(source.name)))
    kinds = {
        "optimiser slots (/Momentum)": sum(name.endswith("/Momentum") for name in skipped),
        "EMA copies (ema_model/)": sum(name.startswith("ema_model/") for name in skipped),
        "memory buffers": sum("memory" in name for name in skipped),
        "global_step": skipped.count("global_step"),
    }
    left_out = ", ".join(f"{count} {kind}" for kind, count in kinds.items() if count) or "nothing"
    verified = [
        f"All {len(sources)} weight tensors read from the checkpoint passed the CRC-32C stored in its index.",
        f"Every variable of the checkpoint became exactly one weight, except the training state ({left_out}).",
    ]
    step = re.search(r"ckpt-(\d+)$", checkpoint.prefix.name)
    return SourceWeights(
        description=str(checkpoint.prefix),
        kind="tensorflow",
        architecture=architecture,
        tensors=tensors,
        step=int(step.group(1)) if step else None,
        verified=verified,
    )


def _read_pytorch(path: Path, description: str) -> SourceWeights:
    architecture, tensors, notes = map_pytorch_copy(load_pytorch_file(path))
    verified = [
        f"The file was read with `torch.load(weights_only=True)` and each of its {len(tensors)} tensors became "
        "exactly one weight."
    ]
    return SourceWeights(description, "pytorch", architecture, dict(tensors), verified=verified, notes=notes)


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        files = HfApi().list_repo_files(repo_id)
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"{repo_id} is neither a local path nor a model repo on the Hub: check the name"
        ) from None
    except (HfHubHTTPError, OSError) as err:
        raise SourceDownloadError(f"listing the files of {repo_id} failed ({err}); nothing was written") from err
    candidates = sorted(name for name in files if name.endswith(_PYTORCH_SUFFIXES))
    if len(candidates) != 1:
        found = ", ".join(candidates) or "no .pth file"
        raise CheckpointError(f"{repo_id} must hold exactly one .pth file to convert, it holds {found}")
    try:
        return Path(hf_hub_download(repo_id, candidates[0]))
    except (HfHubHTTPError, OSError) as err:
        raise SourceDownloadError(f"downloading {repo_id}/{candidates[0]} failed ({err}); nothing was written") from err


def read_source(source: str) -> SourceWeights:
    """Read any supported source: a TensorFlow checkpoint (`model.ckpt-N` prefix, one of its files, or its folder),
    a `.pth` file (or a folder holding one), or the Hub repo id of a lightly-ai copy.

    Raises:
        CheckpointError: the source is missing, unreadable, truncated, or not an official SimCLR network.
        SourceDownloadError: the Hub could not be reached.
    """
    path = Path(source)
    if path.is_file() and path.name.endswith(_PYTORCH_SUFFIXES):
        return _read_pytorch(path, str(path))
    if path.is_dir() and not list(path.glob("*.index")):
        weights = sorted(p for p in path.iterdir() if p.name.endswith(_PYTORCH_SUFFIXES))
        if len(weights) == 1:
            return _read_pytorch(weights[0], str(weights[0]))
    if path.exists() or Path(f"{source}.index").exists():
        resolve_checkpoint_prefix(path)  # a clear error for a folder or file that is no checkpoint
        return _read_tensorflow(path)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not source.startswith((".", "/")):
        file = _download_from_hub(source)
        return _read_pytorch(file, f"{source} ({file.name})")
    raise CheckpointError(
        f"{source} does not exist: pass a TensorFlow checkpoint (model.ckpt-N prefix or its folder), a .pth file, "
        "or a Hub repo id such as lightly-ai/simclrv1-imagenet1k-resnet50-1x"
    )
