"""What reaches the Hub: a run trained on a local folder (a relative --dataset, an absolute --output_dir, TensorBoard
logs, a timm export), evaluated with scripts/linear_eval.py, then pushed with scripts/push_to_hub.py to the local Hub
server. No pushed file names a local path; the card names the repo; the timm repo gets a card of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import SCRIPTS, TINY_PRETRAIN, write_labelled_subset
from hub_server import LocalHubHTTPServer, hub_env

pytestmark = [pytest.mark.hub, pytest.mark.slow]

REPO, TIMM_REPO = "org/simclr-r18", "org/simclr-r18-timm"
DATASET, RUN = "datasets/fashion-small", "runs/simclr-r18-local"  # as typed, relative to the working folder


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def published(hub_server: LocalHubHTTPServer, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("publish")
    (root / DATASET).mkdir(parents=True)
    write_labelled_subset(root / DATASET, 6, 3)
    out = root / RUN
    env = {**hub_env(hub_server, root / "hf_home"), "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    pretrain = [sys.executable, str(SCRIPTS / "pretrain.py"), *TINY_PRETRAIN, "--max_steps", "2", "--dataset", DATASET]
    _run([*pretrain, "--output_dir", str(out), "--timm_export", "--report_to", "tensorboard"], root, env)
    evaluate = [sys.executable, str(SCRIPTS / "linear_eval.py"), "--model", RUN, "--dataset", DATASET]
    _run([*evaluate, "--epochs", "2", "--batch_size", "16", "--num_workers", "0"], root, env)
    push = [sys.executable, str(SCRIPTS / "push_to_hub.py"), RUN, REPO, "--timm_repo", TIMM_REPO]
    stdout = _run([*push, "--timm_dir", f"{RUN}/timm"], root, env)
    store = hub_server.store
    files = {
        repo: {
            path: store.blob_path(blob.sha256).read_bytes()
            for path, blob in store.repos[repo].resolve("main").files.items()
        }
        for repo in (REPO, TIMM_REPO)
    }
    return SimpleNamespace(root=root, out=out, stdout=stdout, files=files, url=hub_server.url)


def test_no_pushed_file_names_a_local_path(published: SimpleNamespace):
    pushed = published.files[REPO]
    # the whole run goes up: records, TensorBoard logs and plots included
    assert {"training_args.json", "eval_results.json", "results.json", "tsne.png", "training_curves.png"} <= set(pushed)
    assert any("events.out.tfevents" in path for path in pushed)
    local = [str(published.root), str(published.root.resolve()), DATASET, RUN]
    # the local card loads the local folder; what goes up must not
    assert str(published.out).encode() in (published.out / "README.md").read_bytes()
    for repo, files in published.files.items():
        for path, content in files.items():
            found = [needle for needle in local if needle.encode() in content]
            assert not found, f"{repo}/{path} names {found}"


def test_the_pushed_card_and_records_name_the_repo(published: SimpleNamespace):
    card = published.files[REPO]["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "transformers" and "datasets" not in metadata  # a local dataset: no Hub id
    assert card.splitlines()[card.splitlines().index("---", 1) + 2] == "# simclr-r18"
    for snippet in (
        'AutoModel.from_pretrained("org/simclr-r18")',
        'AutoModel.from_pretrained("org/simclr-r18", trust_remote_code=True)',
        'pipeline("image-feature-extraction", model="org/simclr-r18", trust_remote_code=True)',
        'timm.create_model("hf-hub:org/simclr-r18-timm", pretrained=True)',
    ):
        assert snippet in card
    assert "pretrained without labels on fashion-small" in card and "Linear probe top-1 accuracy" in card
    args = json.loads(published.files[REPO]["training_args.json"])
    assert (args["dataset"], args["output_dir"], args["max_steps"]) == ("fashion-small", "simclr-r18-local", 2)
    details = json.loads(published.files[REPO]["eval_results.json"])["results"][0]["details"]
    assert details["model"] == "simclr-r18-local"
    # the script says where each folder went
    assert published.stdout.splitlines()[-2].startswith(f"pushed: {published.url}/{REPO} (commit ")
    assert published.stdout.splitlines()[-1].startswith(f"pushed: {published.url}/{TIMM_REPO} (commit ")


def test_the_timm_repo_gets_a_card_of_its_own(published: SimpleNamespace):
    card = published.files[TIMM_REPO]["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "timm" and metadata["pipeline_tag"] == "image-feature-extraction"
    assert "# simclr-r18-timm" in card and "[org/simclr-r18](https://huggingface.co/org/simclr-r18)" in card
    assert 'timm.create_model("hf-hub:org/simclr-r18-timm", pretrained=True)' in card and "`test_resnet`" in card
