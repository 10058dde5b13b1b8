"""`import hf_simclr` registers SimCLR with transformers' Auto classes whatever is imported first, without importing
torch or transformers itself (the command-line scripts' `--help` depends on that)."""

from __future__ import annotations

import pytest
from helpers import run_python

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "imports",
    [
        "import hf_simclr",  # then AutoConfig alone, then the Auto model classes
        "import hf_simclr\nfrom hf_simclr import SimCLRModel",  # the model class first: it imports Auto modules itself
        "from transformers import AutoModel, AutoModelForImageClassification\nimport hf_simclr",  # transformers first
    ],
)
def test_the_auto_classes_load_a_simclr_folder_whatever_is_imported_first(imports, tiny_model_dir):
    out = run_python(
        f"""
        import json, sys
        {imports}
        heavy = sorted(m for m in ("torch", "transformers", "timm", "datasets") if m in sys.modules)
        from transformers import AutoConfig
        config = AutoConfig.from_pretrained({str(tiny_model_dir)!r})
        from transformers import AutoModel, AutoModelForImageClassification
        model = AutoModel.from_pretrained({str(tiny_model_dir)!r})
        classifier = AutoModelForImageClassification.from_pretrained({str(tiny_model_dir)!r}, num_labels=3)
        from transformers import AutoBackbone
        backbone = AutoBackbone.from_config(config)
        classes = [type(o).__module__ + "." + type(o).__name__ for o in (config, model, classifier, backbone)]
        print(json.dumps({{"heavy": heavy, "classes": classes}}))
        """.replace("\n        ", "\n")
    )
    assert out["classes"] == [
        "hf_simclr.configuration_simclr.SimCLRConfig",
        "hf_simclr.modeling_simclr.SimCLRModel",
        "hf_simclr.modeling_simclr.SimCLRForImageClassification",
        "hf_simclr.modeling_simclr.SimCLRBackbone",
    ]
    if imports == "import hf_simclr":  # importing the package loads neither torch nor transformers
        assert out["heavy"] == []
