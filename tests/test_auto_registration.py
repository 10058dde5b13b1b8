"""`import hf_simclr` registers SimCLR with transformers' Auto classes whatever is imported first, without importing
torch or transformers itself (the command-line scripts' `--help` depends on that)."""

from __future__ import annotations

import pytest
from helpers import run_python

pytestmark = pytest.mark.slow


def test_importing_the_package_loads_neither_torch_nor_transformers():
    out = run_python(
        """
        import json, sys
        import hf_simclr
        from hf_simclr.training.arguments import parse_args
        print(json.dumps(sorted(m for m in ("torch", "transformers", "timm", "datasets") if m in sys.modules)))
        """
    )
    assert out == []


@pytest.mark.parametrize(
    "imports",
    [
        "import hf_simclr",  # then the Auto classes
        "import hf_simclr\nfrom hf_simclr import SimCLRModel",  # the model class first: it imports Auto modules itself
        "import hf_simclr.modeling_simclr",
        "from transformers import AutoModel, AutoModelForImageClassification\nimport hf_simclr",  # transformers first
    ],
)
def test_the_auto_classes_load_a_simclr_folder_whatever_is_imported_first(imports, tiny_model_dir):
    out = run_python(
        f"""
        import json
        {imports}
        from transformers import AutoConfig
        config = AutoConfig.from_pretrained({str(tiny_model_dir)!r})
        from transformers import AutoModel, AutoModelForImageClassification
        model = AutoModel.from_pretrained({str(tiny_model_dir)!r})
        classifier = AutoModelForImageClassification.from_pretrained({str(tiny_model_dir)!r}, num_labels=3)
        print(json.dumps([type(o).__module__ + "." + type(o).__name__ for o in (config, model, classifier)]))
        """.replace("\n        ", "\n")
    )
    assert out == [
        "hf_simclr.configuration_simclr.SimCLRConfig",
        "hf_simclr.modeling_simclr.SimCLRModel",
        "hf_simclr.modeling_simclr.SimCLRForImageClassification",
    ]
