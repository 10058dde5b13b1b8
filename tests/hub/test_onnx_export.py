"""scripts/export_onnx.py: a model folder's ONNX graph, run by ONNX Runtime on real images, gives PyTorch's outputs;
the folder has the layout a model repo holds it in; bad input fails in one line with nothing written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import load_script, tiny_config
from transformers import AutoImageProcessor, BertConfig

from hf_simclr import SimCLRForImageClassification, SimCLRModel
from hf_simclr.data import decode_image, load_default_splits

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_class, outputs",
    [(SimCLRModel, ["last_hidden_state", "pooler_output"]), (SimCLRForImageClassification, ["logits"])],
)
def test_onnx_runtime_gives_the_pytorch_outputs_on_real_images(model_class, outputs, tmp_path, capsys, one_thread):
    torch.manual_seed(0)
    model = model_class(tiny_config(backbone="test_resnet", image_size=32, num_labels=10)).eval()
    model.save_pretrained(tmp_path / "model")
    assert load_script("export_onnx").main([str(tmp_path / "model"), str(tmp_path / "export")]) == 0
    assert capsys.readouterr().out.strip() == f"exported: {tmp_path / 'export' / 'onnx' / 'model.onnx'}"

    # the layout of a model repo: onnx/model.onnx beside the model's own config and image processor
    export = tmp_path / "export"
    assert {p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file()} == {
        "onnx/model.onnx",
        "config.json",
        "preprocessor_config.json",
    }
    for name in ("config.json", "preprocessor_config.json"):
        assert (export / name).read_bytes() == (tmp_path / "model" / name).read_bytes()

    session = onnxruntime.InferenceSession(str(export / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    assert [o.name for o in session.get_outputs()] == outputs
    assert session.get_inputs()[0].shape == ["batch_size", 3, 32, 32]
    rows = load_default_splits()["test"].select(range(100, 113))  # images the export's own check did not use
    processor = AutoImageProcessor.from_pretrained(export)
    pixel_values = processor([decode_image(row["image"]) for row in rows], return_tensors="pt")["pixel_values"]
    for batch in (pixel_values, pixel_values[:1]):
        got = session.run(None, {"pixel_values": batch.numpy()})
        with torch.no_grad():
            expected = model(pixel_values=batch)
        for name, value in zip(outputs, got, strict=True):
            assert value.shape == tuple(expected[name].shape)
            np.testing.assert_allclose(value, expected[name].numpy(), rtol=0, atol=1e-4)


def test_bad_input_fails_in_one_line_and_writes_nothing(tmp_path, capsys):
    export = load_script("export_onnx").main
    SimCLRModel(tiny_config(backbone="test_resnet", image_size=32)).save_pretrained(tmp_path / "model")
    capsys.readouterr()
    assert export([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(
        tmp_path / "bert"
    )
    assert export([str(tmp_path / "bert"), str(tmp_path / "out")]) == 2
    assert "holds a 'bert' model, not a SimCLR one" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "done" / "onnx").mkdir(parents=True)
    (tmp_path / "done" / "onnx" / "model.onnx").write_bytes(b"an earlier export")
    assert export([str(tmp_path / "model"), str(tmp_path / "done")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists: pass --overwrite" in err
    assert (tmp_path / "done" / "onnx" / "model.onnx").read_bytes() == b"an earlier export"


@pytest.mark.slow
def test_an_export_that_fails_its_check_writes_nothing(tmp_path, capsys, monkeypatch, one_thread):
    import hf_simclr.hub.onnx_export

    monkeypatch.setattr(hf_simclr.hub.onnx_export, "TOLERANCE", -1.0)  # no graph can pass: the check fails
    SimCLRModel(tiny_config(backbone="test_resnet", image_size=32)).save_pretrained(tmp_path / "model")
    capsys.readouterr()
    assert load_script("export_onnx").main([str(tmp_path / "model"), str(tmp_path / "out")]) == 1
    assert "differs from PyTorch's by" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []
