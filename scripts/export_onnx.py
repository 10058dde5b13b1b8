"""Export a SimCLR model folder (or Hub repo) to ONNX for deployment.

    python scripts/export_onnx.py FOLDER_OR_REPO OUTPUT_DIR [--overwrite] [--opset N]

Writes OUTPUT_DIR/onnx/model.onnx (input `pixel_values` with a dynamic batch size; outputs `last_hidden_state` and
`pooler_output` for a SimCLRModel, `logits` for a SimCLRForImageClassification) with the model's config.json and
preprocessor_config.json beside it, after checking that ONNX Runtime gives the PyTorch outputs on real images.
Push it next to the model with `hf upload org/name OUTPUT_DIR`. Needs `pip install 'hf-simclr[onnx]'`.
Exit codes: 0 exported, 1 the check failed (nothing written), 2 bad input.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from hf_simclr.cli import ArgumentParser, run_cli


@dataclass
class ExportOnnxArguments:
    """Options of `scripts/export_onnx.py FOLDER_OR_REPO OUTPUT_DIR`."""

    overwrite: bool = field(default=False, metadata={"help": "replace an existing OUTPUT_DIR/onnx/model.onnx"})
    opset: int | None = field(default=None, metadata={"help": "ONNX opset (default: the exporter's)"})


def main(argv: list[str] | None = None) -> int:
    def export() -> None:
        parser = ArgumentParser(ExportOnnxArguments, description=__doc__)
        parser.add_argument("source", help="a SimCLR model folder or Hub repo id")
        parser.add_argument("output_dir", help="where onnx/model.onnx, config.json and preprocessor_config.json go")
        args, positional = parser.parse(argv)
        from hf_simclr.hub.onnx_export import export_onnx

        path = export_onnx(positional.source, positional.output_dir, overwrite=args.overwrite, opset=args.opset)
        print(f"exported: {path}")

    return run_cli(export)


if __name__ == "__main__":
    sys.exit(main())
