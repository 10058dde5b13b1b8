"""The demo: the Space's files (metadata the Hub expects, pinned requirements), its push with scripts/push_to_hub.py
on the local Hub, and the app itself in headless Chromium showing the neighbours scripts/search_images.py finds."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from helpers import free_port, load_script, subprocess_env
from hub_server import HubClient

from hf_simclr.demo.space import APP_TEMPLATE, space_files
from hf_simclr.search import read_info

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_space_files_have_the_hubs_metadata_and_pinned_requirements(embedded):
    info = {**read_info(embedded), "dataset_id": "org/photos"}
    files = space_files("org/model-demo", "org/model", "org/embeddings", info)
    metadata = yaml.safe_load(files["README.md"].split("---")[1])
    assert metadata["sdk"] == "gradio" and metadata["app_file"] == "app.py" and metadata["sdk_version"]
    assert metadata["models"] == ["org/model"] and metadata["datasets"] == ["org/embeddings", "org/photos"]
    requirements = [line for line in files["requirements.txt"].splitlines() if line and not line.startswith("#")]
    assert {line.split("==")[0] for line in requirements} >= {"torch", "transformers", "timm", "datasets", "faiss-cpu"}
    assert all("==" in line for line in requirements)
    app = files["app.py"]
    assert 'os.environ.get("MODEL_ID", "org/model")' in app and "import hf_simclr" not in app
    compile(app, "app.py", "exec")
    assert (
        APP_TEMPLATE.read_text().replace("__MODEL_ID__", "org/model").replace("__INDEX_ID__", "org/embeddings") == app
    )


@pytest.mark.hub
def test_push_to_hub_creates_the_space(embedded, tiny_model_dir, hub_client: HubClient):
    out = hub_client.run_json(
        f"""
        import json, runpy, sys
        from huggingface_hub import HfApi
        from hf_simclr.search.publish import push_embeddings
        push_embeddings({str(embedded)!r}, "org/embeddings")
        sys.argv = ["push_to_hub.py", {str(tiny_model_dir)!r}, "org/model", "--space", "org/model-demo",
                    "--space_index", "org/embeddings"]
        try:
            runpy.run_path({str(load_script.__globals__["SCRIPTS"] / "push_to_hub.py")!r}, run_name="__main__")
        except SystemExit as exit:
            code = exit.code
        api = HfApi()
        info = api.space_info("org/model-demo")
        print(json.dumps({{"code": code, "sdk": info.sdk, "card": info.card_data.to_dict(),
                          "files": sorted(api.list_repo_files("org/model-demo", repo_type="space"))}}))
        """
    )
    assert out["code"] == 0 and out["sdk"] == "gradio"
    assert out["files"] == [".gitattributes", "README.md", "app.py", "requirements.txt"]
    assert out["card"]["models"] == ["org/model"] and out["card"]["datasets"] == ["org/embeddings"]


def test_space_and_space_index_go_together(tiny_model_dir, capsys, monkeypatch):
    from helpers import run_push_cli

    code, err = run_push_cli([str(tiny_model_dir), "org/model", "--space", "org/demo"], capsys, monkeypatch)
    assert code == 2 and "--space and --space_index go together" in err


def _wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the demo ended (exit code {process.returncode}):\n{process.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the demo did not serve {url} within {timeout} s")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="needs playwright (the dev extra)")
@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="needs the search extra (gradio)")
def test_the_demo_in_a_browser_shows_the_neighbours_search_images_finds(
    embedded, search_model, search_data, tmp_path, capsys
):
    from playwright.sync_api import sync_playwright

    source = __import__("datasets").Dataset.from_parquet(str(search_data / "train.parquet"))
    image = tmp_path / "query.png"
    image.write_bytes(source[13]["image"]["bytes"])
    assert load_script("search_images").main(["--index", str(embedded), "--query", str(image), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]["neighbours"]

    port = free_port()
    command = [sys.executable, "-m", "hf_simclr.demo", "--model", str(search_model), "--index", str(embedded)]
    env = subprocess_env(GRADIO_ANALYTICS_ENABLED="False")
    demo = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_until_serving(f"http://127.0.0.1:{port}/", demo)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#query input[type=file]", str(image))
            page.wait_for_selector("#neighbour-table table tbody tr", timeout=60_000)
            rows = [row.split("\t") for row in page.locator("#neighbour-table table tbody tr").all_inner_texts()]
            captions = page.locator("#neighbours").inner_text()
            browser.close()
    finally:
        demo.kill()
        demo.wait()
    shown = [(int(index), label, float(score)) for _, index, label, score in rows]
    assert [index for index, _, _ in shown] == [n["index"] for n in expected] and shown[0][0] == 13
    assert [label for _, label, _ in shown] == [n["label"] for n in expected]
    assert [score for _, _, score in shown] == pytest.approx([n["score"] for n in expected], abs=2e-4)
    assert f"row {expected[1]['index']} · {expected[1]['label']}" in captions  # the gallery shows them too
