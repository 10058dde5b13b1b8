"""ONNX for deployment: a SimCLR model folder's forward pass as ``onnx/model.onnx``, next to its config and image
processor, the layout transformers.js and optimum's ``ORTModel`` read from a model repo.

The graph comes from ``torch.onnx.export`` (the dynamo exporter, with onnxscript). optimum's exporter
(optimum-onnx 0.1) requires transformers < 4.58, and transformers' own ``exporters.OnnxExporter`` calls itself
experimental and writes its own layout (``model.onnx`` and ``export.json`` at the top). The batch size is dynamic; the
image size is the one the saved image processor produces. Before anything is written, ONNX Runtime must give the
PyTorch outputs to ``TOLERANCE`` on real images (the embedded data) preprocessed by that image processor.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import RunFailure, UsageError
from .locate import check_local_or_hub, is_hub_unreachable, reaching_the_hub

ONNX_FILE = "onnx/model.onnx"
# the outputs of each model class, under the names transformers' pipelines and optimum's ORTModels read
OUTPUTS = {
    "SimCLRModel": ("last_hidden_state", "pooler_output"),
    "SimCLRForImageClassification": ("logits",),
}
TOLERANCE = 1e-4
CHECK_IMAGES = 8
# a protobuf file holds at most 2 GiB: larger weights go to onnx/model.onnx.data beside it (transformers.js and ONNX
# Runtime read it from there)
EXTERNAL_DATA_BYTES = 1 << 30
COPIED_FILES = ("config.json", "preprocessor_config.json")


class _NamedOutputs(nn.Module):
    """The model's forward pass with `pixel_values` in and the tensors of `names` out, in that order."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(pixel_values=pixel_values, return_dict=True)
        return tuple(outputs[name] for name in self.names)


def _load(source: str) -> tuple[nn.Module, object]:
    from transformers import AutoConfig, AutoImageProcessor

    import hf_simclr  # noqa: F401 - registers the SimCLR classes with the Auto classes

    from ..modeling_simclr import SimCLRForImageClassification, SimCLRModel, build_image_processor

    with reaching_the_hub(f"model {source}"):
        try:
            config = AutoConfig.from_pretrained(source)
        except OSError as error:  # no config.json there: not a model folder
            if is_hub_unreachable(error):
                raise
            raise UsageError(f"{source}: {str(error).splitlines()[0]}") from error
    if getattr(config, "model_type", None) != "simclr":
        raise UsageError(f"{source} holds a {config.model_type!r} model, not a SimCLR one: export it with other tools")
    architecture = (getattr(config, "architectures", None) or ["SimCLRModel"])[0]
    if architecture not in OUTPUTS:
        raise UsageError(f"{source}: config.json names architecture {architecture!r}; one of {', '.join(OUTPUTS)}")
    model_class = SimCLRForImageClassification if architecture == "SimCLRForImageClassification" else SimCLRModel
    with reaching_the_hub(f"model {source}"):
        model = model_class.from_pretrained(source).eval()
        try:
            processor = AutoImageProcessor.from_pretrained(source)
        except OSError:  # a folder saved before the image processor was: the same preprocessing from the config
            processor = build_image_processor(config)
    return model, processor


def _check_images(processor: object, count: int) -> torch.Tensor:
    """`count` images of the embedded data (every class in turn), as the image processor prepares them."""
    from ..data import decode_image, load_default_splits

    rows = load_default_splits()["test"]
    images = [decode_image(rows[i]["image"]) for i in range(count)]
    return torch.as_tensor(processor(images, return_tensors="pt")["pixel_values"])


def _max_differences(session: object, model: nn.Module, pixel_values: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        expected = model(pixel_values)
    got = session.run(None, {"pixel_values": pixel_values.numpy()})
    return {
        name: float(np.abs(value - reference.numpy()).max())
        for name, value, reference in zip(model.names, got, expected, strict=True)
    }


def export_onnx(source: str, output_dir: str | Path, *, overwrite: bool = False, opset: int | None = None) -> Path:
    """Write ``output_dir/onnx/model.onnx`` (and the source's config.json and preprocessor_config.json) for the
    SimCLR model folder or Hub repo ``source``; returns the ONNX file.

    A ``SimCLRModel`` gives ``last_hidden_state`` (the feature map) and ``pooler_output`` (h), a
    ``SimCLRForImageClassification`` ``logits``; the input is ``pixel_values`` with a dynamic batch size.

    Raises:
        UsageError: ``source`` is no SimCLR model, or ``output_dir`` holds an export and ``overwrite`` is false.
        RunFailure: ONNX Runtime's outputs differ from PyTorch's by more than ``TOLERANCE`` (nothing is written).
    """
    try:
        import onnxruntime
        import onnxscript  # noqa: F401 - torch.onnx's dynamo exporter needs it
    except ImportError as error:
        raise UsageError(f"exporting to ONNX needs {error.name}: pip install 'hf-simclr[onnx]'") from None
    from transformers.utils import cached_file

    check_local_or_hub(source, "FOLDER_OR_REPO")
    output_dir = Path(output_dir)
    target = output_dir / ONNX_FILE
    if target.exists() and not overwrite:
        raise UsageError(f"{target} exists: pass --overwrite to replace it, or choose another OUTPUT_DIR")
    model, processor = _load(source)
    wrapped = _NamedOutputs(model, OUTPUTS[type(model).__name__]).eval()
    pixel_values = _check_images(processor, CHECK_IMAGES)
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_DATA_BYTES

    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".onnx-export-") as scratch:
        path = Path(scratch) / "model.onnx"
        batch = torch.export.Dim("batch_size", min=1)
        torch.onnx.export(
            wrapped,
            (pixel_values[:2],),
            str(path),
            input_names=["pixel_values"],
            output_names=list(wrapped.names),
            dynamic_shapes={"pixel_values": {0: batch}},
            opset_version=opset,
            dynamo=True,
            external_data=external,
            verbose=False,
        )
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch_values in (pixel_values, pixel_values[:1]):  # another batch size than the traced one, and one
            differences = _max_differences(session, wrapped, batch_values)
            worst = max(differences, key=differences.get)
            if differences[worst] > TOLERANCE:
                raise RunFailure(
                    f"ONNX Runtime's {worst} differs from PyTorch's by {differences[worst]:.2e} (more than "
                    f"{TOLERANCE:g}) on {len(batch_values)} images: nothing was written to {output_dir}"
                )
        for name in COPIED_FILES:
            file = cached_file(source, name, _raise_exceptions_for_missing_entries=False)
            if file is not None:
                shutil.copyfile(file, Path(scratch) / name)
        if not (Path(scratch) / "preprocessor_config.json").exists():
            processor.save_pretrained(scratch)
        target.parent.mkdir(exist_ok=True)
        for file in Path(scratch).iterdir():
            destination = target.parent / file.name if file.name.startswith("model.onnx") else output_dir / file.name
            os.replace(file, destination)
    return target


__all__ = ["ONNX_FILE", "OUTPUTS", "TOLERANCE", "export_onnx"]
