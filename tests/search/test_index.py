"""The FAISS index and scripts/search_images.py: an image's nearest neighbour is itself, neighbours sorted by score,
save/load and a push/load round trip on the local Hub, queries by file and by row, grids and near-duplicates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script, run_python
from hub_server import HubClient
from PIL import Image
from search_data import DUPLICATE, NUM_IMAGES, UNREADABLE

from hf_simclr.search import EmbeddingIndex, find_duplicates, load_embeddings

pytest.importorskip("faiss", reason="needs the search extra: pip install -e '.[search]'")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def index_folder(embedded, tmp_path) -> Path:
    """A copy of the embedded dataset that a test may write its index into."""
    return Path(shutil.copytree(embedded, tmp_path / "index"))


def search_json(argv: list[str], capsys) -> list:
    assert load_script("search_images").main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("approximate", [False, True])
def test_each_image_is_its_own_nearest_neighbour_and_neighbours_are_sorted(index_folder, approximate):
    index = EmbeddingIndex.load(index_folder, approximate=approximate)
    dataset, _, _ = load_embeddings(index_folder)
    results = index.search(np.asarray(dataset["embedding"], dtype=np.float32), k=5)
    for row, found in enumerate(results):
        scores = [n.score for n in found]
        assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.0, abs=1e-5)
        assert row in [n.row for n in found[:2]]  # the duplicate pair ties at 1.0
        assert found[0].index == index.sources[found[0].row] and isinstance(found[0].label, str)
    assert index.kind == ("HNSW32" if approximate else "Flat")


def test_the_index_survives_save_and_load(index_folder):
    index = EmbeddingIndex.load(index_folder)
    path = index.save()
    assert path == index_folder / "index.faiss" and path.is_file()
    again = EmbeddingIndex.load(index_folder)
    queries = np.asarray(load_embeddings(index_folder)[0]["embedding"][:10], dtype=np.float32)
    assert again.search(queries, 4) == index.search(queries, 4)
    assert EmbeddingIndex.load(index_folder, approximate=True).kind == "HNSW32"  # a saved index of another kind: built


def test_a_query_image_finds_itself_and_files_and_rows_agree(index_folder, search_data, tmp_path, capsys):
    source = __import__("datasets").Dataset.from_parquet(str(search_data / "train.parquet"))
    image = tmp_path / "query.png"
    image.write_bytes(source[13]["image"]["bytes"])
    report = search_json(["--index", str(index_folder), "--query", str(image), "row:13", "-k", "4"], capsys)
    by_file, by_row = report
    assert by_file["neighbours"][0]["index"] == 13 and by_file["neighbours"][0]["score"] > 0.99
    assert [n["index"] for n in by_file["neighbours"]] == [n["index"] for n in by_row["neighbours"]]
    assert (index_folder / "index.faiss").is_file()  # built once, loaded next time


def test_grid_and_bad_queries(index_folder, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    assert (
        load_script("search_images").main(
            ["--index", str(index_folder), "--query", "row:0", "row:3", "-k", "3", "--grid", str(grid)]
        )
        == 0
    )
    assert "row 0" in capsys.readouterr().out
    assert Image.open(grid).size[1] > 2 * 112  # two lines of tiles
    for query, message in [
        ("row:41", "row 41 is not in the index"),
        ("missing.png", "no such file"),
        ("row:x", "write row:N"),
    ]:
        assert load_script("search_images").main(["--index", str(index_folder), "--query", query]) == 2
        assert message in capsys.readouterr().err


def test_duplicates_lists_the_identical_pair(index_folder, capsys):
    pairs = find_duplicates(EmbeddingIndex.load(index_folder), threshold=0.999)
    assert (pairs[0].first, pairs[0].second) == DUPLICATE and pairs[0].score > 0.9999
    assert all(p.score >= 0.999 for p in pairs) and pairs[0].first_label == pairs[0].second_label
    out = search_json(["--index", str(index_folder), "--duplicates", "0.999"], capsys)
    assert (out[0]["first"], out[0]["second"]) == DUPLICATE


def test_search_imports_neither_gradio_nor_faiss_before_its_flags_are_read():
    out = run_python(
        """
        import json, sys
        import hf_simclr.search, hf_simclr.search.arguments, hf_simclr.hub.push, hf_simclr.demo
        from hf_simclr.search import parse_search_args
        print(json.dumps({name: name in sys.modules for name in ("gradio", "faiss", "torch")}))
        """
    )
    assert out == {"gradio": False, "faiss": False, "torch": False}


@pytest.mark.hub
def test_push_and_search_from_the_hub(embedded, hub_client: HubClient):
    out = hub_client.run_json(
        f"""
        import json
        import numpy as np
        from huggingface_hub import HfApi
        from hf_simclr.search import EmbeddingIndex, load_embeddings
        from hf_simclr.search.publish import push_embeddings
        url = push_embeddings({str(embedded)!r}, "org/embeddings")
        again = push_embeddings({str(embedded)!r}, "org/embeddings")
        index = EmbeddingIndex.load("org/embeddings")
        local = EmbeddingIndex.load({str(embedded)!r})
        queries = np.asarray(load_embeddings({str(embedded)!r})[0]["embedding"][:5], dtype=np.float32)
        api = HfApi()
        print(json.dumps({{
            "url": url, "again": again, "same": index.search(queries, 5) == local.search(queries, 5),
            "files": sorted(api.list_repo_files("org/embeddings", repo_type="dataset")),
            "info": index.info, "card": open(api.hf_hub_download("org/embeddings", "README.md",
                                                              repo_type="dataset")).read(),
        }}))
        """
    )
    assert out["url"] == out["again"] and "/datasets/org/embeddings/commit/" in out["url"] and out["same"]
    assert out["files"] == [
        ".gitattributes",
        "README.md",
        "data/train-00000-of-00003.parquet",
        "data/train-00001-of-00003.parquet",
        "data/train-00002-of-00003.parquet",
        "embedding_info.json",
        "failed_images.json",
    ]
    info = out["info"]
    assert info["model"] == info["model_name"] and "/" not in info["model"]  # a local folder goes up by name only
    assert str(embedded.parent) not in json.dumps(info) and info["dataset"] == "train.parquet"
    assert f"by {info['model_name']}" in out["card"] and 'load_dataset("org/embeddings"' in out["card"]
    assert info["num_embedded"] == NUM_IMAGES - 1 and UNREADABLE not in range(info["num_embedded"], NUM_IMAGES - 1)
