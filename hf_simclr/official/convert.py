"""Converting an official SimCLR checkpoint into a normal hf_simclr model folder.

The folder holds one safetensors file with the encoder, the projection head (if the checkpoint has one) and the
classifier (if it has one), so that `AutoModel` (SimCLRModel: h and z) and `AutoModelForImageClassification`
(logits) both load it; plus the config, the model code, the image processor ([0, 1] inputs, no mean/std) and a
model card. Everything is read and checked before anything is written, and written to a scratch folder that is
moved into place only once the saved weights reload bit-identical to the source.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from ..configuration_simclr import SimCLRConfig
from ..errors import CheckpointError, RunFailure, UsageError
from ..hub.export import save_model
from ..hub.output_lock import OutputDirLock
from ..hub.records import writing
from ..modeling_simclr import SimCLRForImageClassification, SimCLRModel
from .architecture import OfficialArchitecture
from .card import build_official_card
from .sources import SourceWeights, read_source
from .variants import Variant, recognise_variant

__all__ = ["ConversionResult", "convert_official_checkpoint"]

TESTED_CLAIM = (
    "The conversion code is tested against TensorFlow: checkpoints written by TensorFlow from the official "
    "architecture with random weights give the same h, z and logits to 1e-4 after conversion. The accuracy of "
    "this checkpoint was not measured during the conversion."
)


@dataclass
class ConversionResult:
    output_dir: Path
    config: SimCLRConfig
    weights: SourceWeights
    variant: Variant | None


def _check_variant(variant: Variant | None, architecture: OfficialArchitecture, source: str) -> None:
    if variant is None:
        return
    found = (architecture.depth, architecture.width_multiplier, int(architecture.sk_ratio > 0))
    if (variant.depth, variant.width, variant.sk) != found:
        named = f"r{variant.depth}_{variant.width}x_sk{variant.sk}" if variant.generation == "SimCLRv2" else None
        raise CheckpointError(
            f"{source} is named as {named or f'ResNet-{variant.depth} ({variant.width}x)'} but holds a "
            f"{architecture.name}: rename it so that the model card names the right checkpoint"
        )


def _classifier_position(architecture: OfficialArchitecture, requested: int | None, variant: Variant | None) -> int:
    """How many head layers lie below the classifier: as requested, else as the release folder implies."""
    if architecture.num_classes is None:
        if requested:
            raise CheckpointError("the checkpoint has no classifier: --classifier_projection_layers must be 0")
        return 0
    kept = requested if requested is not None else (variant.classifier_projection_layers if variant else 0)
    if kept > architecture.projection_layers:
        raise CheckpointError(
            f"the classifier cannot sit on head layer {kept}: the checkpoint's head has "
            f"{architecture.projection_layers} layers"
        )
    if kept == 0:
        width = architecture.num_features
    elif kept < architecture.projection_layers:
        width = architecture.projection_hidden_dim or architecture.num_features
    else:
        width = architecture.projection_dim
    if width != architecture.classifier_in_features:
        raise CheckpointError(
            f"the classifier takes {architecture.classifier_in_features} inputs, but the output it would sit on "
            f"with classifier_projection_layers={kept} has {width}: choose another --classifier_projection_layers"
        )
    return kept


def _complete_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix_filter) -> dict:
    """The model's state dict from `tensors`: every key present with its shape; BatchNorm step counters at 0."""
    expected = model.state_dict()
    state = {}
    for key, reference in expected.items():
        if key in tensors:
            tensor = tensors[key]
        elif key.endswith("num_batches_tracked"):  # TensorFlow keeps no such counter
            tensor = torch.zeros((), dtype=torch.long)
        else:
            raise CheckpointError(f"the source has no tensor for {key}: the checkpoint is incomplete")
        if tuple(tensor.shape) != tuple(reference.shape):
            raise CheckpointError(
                f"{key} has shape {tuple(tensor.shape)} in the source, the network needs {tuple(reference.shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"the source tensor for {key} holds NaN or infinite values, so every output would be NaN: convert a "
                "checkpoint saved before the training diverged"
            )
        state[key] = tensor.to(reference.dtype).contiguous()
    unused = sorted(k for k in tensors if prefix_filter(k) and k not in expected)
    if unused:
        raise CheckpointError(f"the source tensor for {unused[0]} has no place in the network")
    return state


def _build(config: SimCLRConfig, tensors: dict[str, torch.Tensor]) -> tuple[SimCLRModel, dict[str, torch.Tensor]]:
    """A SimCLRModel holding the source weights, and the state dict to save (its weights plus the classifier)."""
    with torch.device("meta"):
        model = SimCLRModel(config)
        classifier = SimCLRForImageClassification(config) if "classifier.weight" in tensors else None
    state = _complete_state_dict(model, tensors, lambda key: not key.startswith("classifier."))
    model.load_state_dict(state, strict=True, assign=True)
    if classifier is not None:
        extra = _complete_state_dict(classifier, {**tensors, **state}, lambda key: key.startswith("classifier."))
        state.update((key, value) for key, value in extra.items() if key.startswith("classifier."))
    return model.eval(), state


def _verify_saved(folder: Path, state: dict[str, torch.Tensor], with_classifier: bool) -> list[str]:
    """Reload the folder with both Auto classes' models and compare every tensor with the source, bit for bit."""
    checked = []
    classes = [SimCLRModel] + ([SimCLRForImageClassification] if with_classifier else [])
    for cls in classes:
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a loading bar per check is noise in the converter's output
        try:
            loaded = cls.from_pretrained(folder).eval()
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        for key, tensor in loaded.state_dict().items():
            if not torch.equal(tensor, state[key]):
                raise RuntimeError(f"{cls.__name__} reloads {key} differently from the source: the save is broken")
        with torch.no_grad():  # a forward pass runs and gives finite numbers
            output = loaded(pixel_values=torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
        values = output.logits if with_classifier and cls is SimCLRForImageClassification else output.pooler_output
        if not torch.isfinite(values).all():
            raise RuntimeError(f"{cls.__name__} gives non-finite outputs: the source weights are broken")
        checked.append(cls.__name__)
        del loaded, output  # one reloaded copy at a time: the source plus one copy is the conversion's peak memory
    return [
        f"The saved safetensors reload bit-identical to the source tensors as {' and '.join(checked)} "
        "(`AutoModel` / `AutoModelForImageClassification`)."
    ]


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"{output_dir} is a file: choose a folder for the converted model")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise UsageError(f"{output_dir} is not empty: choose a new folder, or pass --overwrite to replace its files")


def convert_official_checkpoint(
    source: str,
    output_dir: str | Path,
    *,
    classifier_projection_layers: int | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
) -> ConversionResult:
    """Convert `source` (see `read_source`) into a model folder at `output_dir`.

    Args:
        classifier_projection_layers: where the classifier sits (see `SimCLRConfig`); by default 1 for SimCLRv2's
            `finetuned_1pct` / `finetuned_10pct` releases, recognised by name, else 0.
        repo_id: the Hub repo the folder is meant for, used in the model card's examples.
        overwrite: replace the files of a non-empty `output_dir`.

    Raises:
        CheckpointError: the source is not a supported official checkpoint; nothing was written.
    """
    output_dir = Path(output_dir)
    _prepare_output(output_dir, overwrite)
    # before the source is read: the folder must be writable (this also creates it) and not in use
    with OutputDirLock(output_dir, flag="OUTPUT_DIR"):
        weights = read_source(source)
        architecture = weights.architecture
        variant = recognise_variant(weights.description) or recognise_variant(source)
        _check_variant(variant, architecture, source)
        kept = _classifier_position(architecture, classifier_projection_layers, variant)
        config = architecture.config(classifier_projection_layers=kept)
        model, state = _build(config, weights.tensors)
        _write(output_dir, model, state, weights, variant, repo_id)
    return ConversionResult(output_dir, config, weights, variant)


def _write(
    output_dir: Path,
    model: SimCLRModel,
    state: dict[str, torch.Tensor],
    weights: SourceWeights,
    variant: Variant | None,
    repo_id: str | None,
) -> None:
    """Save, reload and compare in a scratch folder inside ``output_dir`` (same filesystem, so the files then move
    into place by renaming); a write that fails (a full disk, an I/O error) is one line and leaves no scratch."""
    scratch = Path(tempfile.mkdtemp(dir=output_dir, prefix=".converting-"))
    try:
        with writing(output_dir, "the converted model", then="then convert again"):  # a full disk: one line
            try:
                save_model(model, scratch, state_dict=state)
                checks = _verify_saved(scratch, state, "classifier.weight" in state)
                card = build_official_card(
                    repo_id or str(output_dir),
                    model.config,
                    weights,
                    variant,
                    weights.verified + checks + [TESTED_CLAIM],
                )
                card.save(scratch / "README.md")
                for path in scratch.iterdir():
                    path.replace(output_dir / path.name)
            except OSError as error:  # any other failure to write
                raise RunFailure(
                    f"writing the converted model to {output_dir} failed ({error.strerror or error}): choose another "
                    "OUTPUT_DIR, then convert again"
                ) from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
