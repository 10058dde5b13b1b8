"""Hub round trip over real HTTP: a tiny model trained and pushed by scripts/pretrain.py, loaded back by repo id.

Every Hub client runs in a fresh process against the local server of tests/hub_server.py (127.0.0.1 only); each
process checks several things because importing torch and transformers dominates the runtime.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import SCRIPTS, TINY_PRETRAIN, forbid_pickle
from hub_server import HubClient, LocalHubHTTPServer, hub_env
from transformers import AutoImageProcessor

from hf_simclr import SimCLRBackbone, SimCLRModel
from hf_simclr.data import load_default_splits

pytestmark = [pytest.mark.hub, pytest.mark.slow]

REPO, TIMM_REPO, REVISIONS_REPO = "org/simclr-tiny", "org/simclr-tiny-timm", "org/simclr-tiny-revisions"

PRETRAIN, PUSH = str(SCRIPTS / "pretrain.py"), str(SCRIPTS / "push_to_hub.py")

TINY = [*TINY_PRETRAIN, "--max_steps", "2"]

INPUTS = """
import json
import numpy as np
import torch
from PIL import Image

torch.manual_seed(0)
pixels = torch.randn(2, 3, 32, 32)
image = Image.fromarray(np.random.RandomState(0).randint(0, 256, (40, 48, 3), dtype=np.uint8))


def features(model):
    with torch.no_grad():
        out = model(pixel_values=pixels)
    return {"pooled": out.pooler_output.tolist(), "projections": out.projections.tolist()}
"""

NO_PICKLE = "\ntorch.load = forbid_pickle\n"


def _snippet(body: str, **constants: object) -> str:
    header = "".join(f"{k} = {v!r}\n" for k, v in constants.items())
    return header + INPUTS + inspect.getsource(forbid_pickle) + NO_PICKLE + body


def _close(actual: list, expected: torch.Tensor) -> None:
    torch.testing.assert_close(torch.tensor(actual), expected, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def pushed(hub_server: LocalHubHTTPServer, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny model trained for 2 steps and pushed with `--timm_export --push_to_hub`, and its local outputs."""
    root = tmp_path_factory.mktemp("roundtrip")
    (root / "data").mkdir()
    load_default_splits()["train"].select(range(128)).to_parquet(str(root / "data" / "train.parquet"))
    out = root / "run"
    command = [sys.executable, PRETRAIN, *TINY, "--dataset", str(root / "data" / "train.parquet")]
    command += ["--output_dir", str(out), "--timm_export", "--push_to_hub", "--hub_model_id", REPO]
    env = {**hub_env(hub_server, root / "hf_home"), "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    for repo in (REPO, TIMM_REPO):  # --push_to_hub says where the model went, as scripts/push_to_hub.py does
        assert f"pushed: {hub_server.url}/{repo} (commit " in result.stdout

    namespace: dict = {}
    exec(INPUTS, namespace)
    model = SimCLRModel.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    with torch.no_grad():
        piped = model(**processor(namespace["image"], return_tensors="pt")).pooler_output
    local = {k: torch.tensor(v) for k, v in namespace["features"](model).items()}
    repo = hub_server.store.repos[REPO]
    pixels = namespace["pixels"]
    return SimpleNamespace(out=out, first=repo.branches["main"], pipeline=piped, pixels=pixels, **local)


def test_pretrain_push_uploads_the_run_and_the_timm_export(pushed: SimpleNamespace, hub_server: LocalHubHTTPServer):
    store = hub_server.store
    files = store.repos[REPO].resolve("main").files
    model_files = ["model.safetensors", "config.json", "preprocessor_config.json", "README.md", "modeling_simclr.py"]
    assert {*model_files, "configuration_simclr.py"} <= files.keys()
    assert not any(p.startswith(("checkpoints/", "timm/")) or p.endswith(".bin") for p in files)
    assert files["model.safetensors"].is_lfs
    timm_files = store.repos[TIMM_REPO].resolve("main").files
    assert {"model.safetensors", "config.json"} <= timm_files.keys()
    for repo_id in (REPO, TIMM_REPO):  # one commit on top of the repo's creation
        assert [c.title for c in store.repos[repo_id].commits.values()][0] == "initial commit"
        assert len(store.repos[repo_id].commits) == 2


def test_repo_loads_like_the_local_model_online_then_offline(pushed: SimpleNamespace, hub_client: HubClient):
    online = hub_client.run_json(
        _snippet(
            """
import timm
from transformers import AutoModel, AutoModelForImageClassification, pipeline

import hf_simclr
from hf_simclr import SimCLRModel

out = {}
model = AutoModel.from_pretrained(REPO)
out["class"], out["model"] = type(model).__name__, features(model)
out["pipeline"] = pipeline("image-feature-extraction", model=REPO)(image, pool=True)
classifier = AutoModelForImageClassification.from_pretrained(REPO, num_labels=3)
with torch.no_grad():
    out["classifier"] = [type(classifier).__name__, list(classifier(pixel_values=pixels).logits.shape),
                         classifier._encode(pixels)[1].tolist()]
    out["timm"] = timm.create_model("hf-hub:" + TIMM_REPO, pretrained=True).eval()(pixels).tolist()
errors = {}
for name, load in {
    "missing repo": lambda: AutoModel.from_pretrained("org/does-not-exist"),
    "timm repo": lambda: SimCLRModel.from_pretrained(TIMM_REPO),
}.items():
    try:
        load()
        errors[name] = None
    except Exception as err:
        errors[name] = [type(err).__name__, str(err)]
out["errors"] = errors

# transformers' dense models on the repo's encoder: every backbone tensor against the local checkpoint's
from transformers import AutoBackbone, DetrConfig, DetrForObjectDetection, UperNetConfig, UperNetForSemanticSegmentation
from hf_simclr.dense_models import find_simclr_backbone, load_simclr_backbone

local = {k: v for k, v in SimCLRModel.from_pretrained(LOCAL).state_dict().items() if k.startswith("encoder.")}
backbone = AutoBackbone.from_pretrained(REPO, out_features=["stage1", "stage2", "stage3", "stage4"])
upernet = UperNetForSemanticSegmentation(UperNetConfig(backbone_config=backbone.config, hidden_size=16, num_labels=3))
load_simclr_backbone(upernet, backbone)
detr_config = DetrConfig(backbone_config=AutoBackbone.from_pretrained(REPO, out_features=["stage4"]).config,
                         d_model=16, encoder_layers=1, decoder_layers=1, num_queries=4)
detr = DetrForObjectDetection(detr_config)
load_simclr_backbone(detr, REPO)  # a repo id straight away
out["backbone"] = type(backbone).__name__
for name, dense in {"upernet": upernet, "detr": detr}.items():
    state = find_simclr_backbone(dense).state_dict()
    out[name] = {"compared": len(state), "different": [k for k, v in state.items() if not torch.equal(v, local[k])]}
print(json.dumps(out))
""",
            REPO=REPO,
            TIMM_REPO=TIMM_REPO,
            LOCAL=str(pushed.out),
        )
    )
    assert online["backbone"] == "SimCLRBackbone"
    for name in ("upernet", "detr"):
        assert online[name]["compared"] > 50 and online[name]["different"] == []
    assert online["class"] == "SimCLRModel"
    _close(online["model"]["pooled"], pushed.pooled)
    _close(online["model"]["projections"], pushed.projections)
    _close(online["pipeline"], pushed.pipeline)
    name, logits_shape, classifier_features = online["classifier"]
    assert name == "SimCLRForImageClassification" and logits_shape == [2, 3]
    _close(classifier_features, pushed.pooled)
    _close(online["timm"], pushed.pooled)
    kind, message = online["errors"]["missing repo"]
    assert kind == "OSError" and "org/does-not-exist" in message
    kind, message = online["errors"]["timm repo"]
    assert kind == "ValueError" and TIMM_REPO in message and "'timm_wrapper' model, not a SimCLR one" in message

    # the same HF_HOME, now without network access: everything comes from the cache
    offline = hub_client.run_json(
        _snippet(
            """
import timm
from transformers import AutoModel, pipeline

import hf_simclr

out = {"model": features(AutoModel.from_pretrained(REPO))}
out["pipeline"] = pipeline("image-feature-extraction", model=REPO)(image, pool=True)
with torch.no_grad():
    out["timm"] = timm.create_model("hf-hub:" + TIMM_REPO, pretrained=True).eval()(pixels).tolist()
print(json.dumps(out))
""",
            REPO=REPO,
            TIMM_REPO=TIMM_REPO,
        ),
        offline=True,
    )
    _close(offline["model"]["pooled"], pushed.pooled)
    _close(offline["pipeline"], pushed.pipeline)
    _close(offline["timm"], pushed.pooled)


def test_remote_code_loads_the_repo_without_hf_simclr(pushed: SimpleNamespace, hub_client: HubClient):
    out = hub_client.run_json(
        _snippet(
            """
from transformers import AutoBackbone, AutoModel, pipeline

try:
    import hf_simclr  # noqa: F401
    importable = True
except ImportError:
    importable = False
model = AutoModel.from_pretrained(REPO, trust_remote_code=True)
extractor = pipeline("image-feature-extraction", model=REPO, trust_remote_code=True)
backbone = AutoBackbone.from_pretrained(REPO, trust_remote_code=True, out_features=["stem", "stage4"])
with torch.no_grad():
    maps = [m.tolist() for m in backbone(pixels).feature_maps]
print(json.dumps({"importable": importable, "module": type(model).__module__, "model": features(model),
                  "pipeline": extractor(image, pool=True), "backbone": type(backbone).__module__, "maps": maps}))
""",
            REPO=REPO,
        ),
        blocked_imports=["hf_simclr"],
    )
    assert out["importable"] is False
    assert out["module"].startswith("transformers_modules.") and out["module"].endswith(".modeling_simclr")
    _close(out["model"]["pooled"], pushed.pooled)
    _close(out["model"]["projections"], pushed.projections)
    _close(out["pipeline"], pushed.pipeline)
    # AutoBackbone too: the saved auto_map names SimCLRBackbone
    assert out["backbone"] == out["module"]
    local = SimCLRBackbone.from_pretrained(pushed.out, out_features=["stem", "stage4"]).eval()
    with torch.no_grad():
        expected = local(pushed.pixels).feature_maps
    for actual, wanted in zip(out["maps"], expected, strict=True):
        _close(actual, wanted)


def test_second_push_makes_a_revision_and_unchanged_push_none(
    pushed: SimpleNamespace, hub_client: HubClient, hub_server: LocalHubHTTPServer, tmp_path: Path
):
    changed = tmp_path / "changed"
    shutil.copytree(pushed.out, changed, ignore=shutil.ignore_patterns("checkpoints", "timm"))
    out = hub_client.run_json(
        _snippet(
            """
import runpy
import sys
from pathlib import Path

from huggingface_hub import HfApi
from safetensors.torch import load_file, save_file
from transformers import AutoModel

import hf_simclr
from hf_simclr import SimCLRModel


def push(*argv):
    sys.argv = ["push_to_hub.py", *argv]
    try:
        runpy.run_path(PUSH, run_name="__main__")
    except SystemExit as exit_:
        return exit_.code


api = HfApi()
codes = [push(OUT, REPO, "--timm_repo", TIMM_REPO, "--timm_dir", OUT + "/timm")]  # what pretrain pushed
codes.append(push(OUT, REVISIONS_REPO))
first = api.model_info(REVISIONS_REPO).sha
weights = load_file(CHANGED + "/model.safetensors")
weights = {k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}
save_file(weights, CHANGED + "/model.safetensors", metadata={"format": "pt"})
codes.append(push(CHANGED, REVISIONS_REPO))
codes.append(push(CHANGED, REVISIONS_REPO))
print(json.dumps({
    "codes": codes, "first": first,
    "commits": {r: [c.commit_id for c in api.list_repo_commits(r)] for r in (REPO, TIMM_REPO, REVISIONS_REPO)},
    "old": features(AutoModel.from_pretrained(REVISIONS_REPO, revision=first)),
    "new": features(AutoModel.from_pretrained(REVISIONS_REPO)),
    "changed": features(SimCLRModel.from_pretrained(CHANGED)),
}))
""",
            OUT=str(pushed.out),
            CHANGED=str(changed),
            PUSH=PUSH,
            REPO=REPO,
            TIMM_REPO=TIMM_REPO,
            REVISIONS_REPO=REVISIONS_REPO,
        )
    )
    assert out["codes"] == [0, 0, 0, 0]
    # the CLI re-pushing what pretrain pushed is a no-op: same files, byte for byte
    assert out["commits"][REPO][0] == pushed.first and len(out["commits"][REPO]) == 2
    assert len(out["commits"][TIMM_REPO]) == 2
    first, *older = out["commits"][REVISIONS_REPO][1:]
    assert first == out["first"] and len(older) == 1  # changed weights: one commit; the repeat of it: none
    assert hub_server.store.repos[REVISIONS_REPO].resolve("main").id == out["commits"][REVISIONS_REPO][0]
    _close(out["old"]["pooled"], pushed.pooled)
    _close(out["old"]["projections"], pushed.projections)
    _close(out["new"]["pooled"], torch.tensor(out["changed"]["pooled"]))
    assert not torch.allclose(torch.tensor(out["new"]["pooled"]), pushed.pooled, atol=1e-3)
