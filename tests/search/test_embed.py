"""scripts/embed_dataset.py: rows in dataset order with their index and label, the feature-extraction pipeline's
embeddings, unreadable images recorded, a killed run resumed from its last shard, two processes, streaming."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import SCRIPTS, pretrain_env, subprocess_env, wait_for
from PIL import Image
from search_data import DUPLICATE, NUM_IMAGES, UNREADABLE, embed_args
from transformers import pipeline

from hf_simclr.cli import run_cli
from hf_simclr.data.decode import decode_image
from hf_simclr.search import embed_dataset, load_embeddings

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rows_in_order_with_index_label_and_unreadable_images_recorded(embedded, search_data):
    dataset, info, folder = load_embeddings(embedded)
    assert dataset.column_names == ["index", "label", "embedding"]
    assert list(dataset["index"]) == [i for i in range(NUM_IMAGES) if i != UNREADABLE]
    assert sorted(p.name for p in (folder / "data").iterdir()) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert dataset.features["label"].names[0] == "T-shirt/top"  # the source's ClassLabel, kept
    embeddings = np.asarray(dataset["embedding"], dtype=np.float32)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    failed = json.loads((folder / "failed_images.json").read_text())
    assert [row["index"] for row in failed] == [UNREADABLE] and "UnidentifiedImageError" in failed[0]["error"]
    assert info["num_rows"] == NUM_IMAGES and info["num_embedded"] == NUM_IMAGES - 1 and info["num_failed"] == 1
    assert info["preprocessing"]["fast_path"] and info["embedding_dim"] == 512
    card = (folder / "README.md").read_text()
    assert f"by {info['model_name']}" in card and "image-feature-extraction" in card and "data/train-*" in card


def test_embeddings_are_the_feature_extraction_pipelines(embedded, search_model, search_data):
    """The fast decode path reproduces the model's own evaluation preprocessing: the embeddings are those of
    transformers' pipeline("image-feature-extraction") (pool=True), L2-normalised."""
    dataset, _, _ = load_embeddings(embedded)
    source = __import__("datasets").Dataset.from_parquet(str(search_data / "train.parquet"))
    extractor = pipeline("image-feature-extraction", model=str(search_model))
    rows = [0, 13, 39]
    images = [decode_image(source[i]["image"]) for i in rows]
    expected = torch.nn.functional.normalize(torch.tensor(np.asarray(extractor(images, pool=True))).squeeze(1), dim=1)
    ours = torch.tensor(np.asarray(dataset.select(rows)["embedding"]))
    assert (ours * expected).sum(1).min() > 0.99  # 0.9965-0.9988 here: bicubic on two sampling grids


def test_duplicate_rows_get_the_same_embedding(embedded):
    dataset, _, _ = load_embeddings(embedded)
    a, b = (np.asarray(dataset[i]["embedding"]) for i in DUPLICATE)
    assert np.allclose(a, b, atol=1e-6)


def test_a_finished_run_again_is_a_no_op_and_another_embedding_is_refused(embedded, search_model, search_data, capsys):
    before = {p: p.stat().st_mtime_ns for p in (embedded / "data").iterdir()}
    embed_dataset(embed_args(search_model, search_data, embedded))
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (embedded / "data").iterdir()} == before
    argv = embed_args(search_model, search_data, embedded, "--shard_size", "5")
    assert run_cli(lambda: embed_dataset(argv)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds another embedding (shard_size 16 -> 5)" in last and "--overwrite_output_dir" in last


def test_streaming_gives_the_same_rows(embedded, search_model, search_data, tmp_path):
    streamed = embed_dataset(embed_args(search_model, search_data, tmp_path / "out", "--streaming"))
    (a, _, _), (b, _, _) = load_embeddings(embedded), load_embeddings(streamed)
    assert list(a["index"]) == list(b["index"]) and list(a["label"]) == list(b["label"])
    assert np.allclose(np.asarray(a["embedding"]), np.asarray(b["embedding"]), atol=1e-5)


def _command(model, data, out, *extra):
    args = ["--model", str(model), "--dataset", str(data / "train.parquet"), "--output_dir", str(out)]
    return [str(SCRIPTS / "embed_dataset.py"), *args, "--num_workers", "0", *extra]


@pytest.mark.slow
@pytest.mark.distributed
def test_a_killed_run_resumes_on_two_processes_from_its_last_written_shard(
    embedded, search_model, search_data, tmp_path
):
    """SIGKILL a run after its second shard, then run the same command under `accelerate launch` with two processes:
    the shards written before the kill are kept, the two processes embed the rest, merged in dataset order."""
    out = tmp_path / "out"
    command = _command(search_model, search_data, out, "--shard_size", "4", "--batch_size", "1")
    process = subprocess.Popen([sys.executable, *command], env=subprocess_env(), stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (out / ".shards" / "00001.parquet").exists(), process, "the second shard", timeout=120)
    finally:
        process.kill()
        process.wait()
    kept = {p.name: p.stat().st_ino for p in (out / ".shards").glob("*.parquet")}
    assert 2 <= len(kept) < 11 and not (out / "embedding_info.json").exists()
    launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no"]
    result = subprocess.run([sys.executable, *launch, *command], env=pretrain_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (resumed, info, folder), (whole, _, _) = load_embeddings(out), load_embeddings(embedded)
    assert info["processes"] == 2
    assert list(resumed["index"]) == list(whole["index"]) and list(resumed["label"]) == list(whole["label"])
    assert np.allclose(np.asarray(resumed["embedding"]), np.asarray(whole["embedding"]), atol=1e-5)
    files = {p.name: p.stat().st_ino for p in (folder / "data").iterdir()}
    for name, inode in kept.items():  # the shards written before the kill were kept, not embedded again
        assert files[f"train-{name[:5]}-of-00011.parquet"] == inode


def test_bad_input_is_one_line_and_exit_code_2(search_data, tmp_path, capsys):
    argv = ["--model", "/nonexistent/model", "--dataset", str(search_data), "--output_dir", str(tmp_path / "o")]
    from hf_simclr.search import parse_embed_args

    assert run_cli(lambda: embed_dataset(parse_embed_args(argv))) == 2
    assert "--model /nonexistent/model: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written
    assert run_cli(lambda: parse_embed_args([*argv, "--push_to_hub", "not a repo"])) == 2


def test_any_image_processor_is_reproduced_or_applied_as_it_is():
    from transformers import BitImageProcessor, ViTImageProcessor

    from hf_simclr.search.preprocess import FastPreprocessing, ProcessorPreprocessing, preprocessing_for

    bit = BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})
    assert preprocessing_for(bit) == FastPreprocessing(224, 224 / 256, tuple(bit.image_mean), tuple(bit.image_std))
    vit = ViTImageProcessor()  # bilinear: not the fast path's bicubic, so applied as it is
    assert isinstance(preprocessing_for(vit), ProcessorPreprocessing)
    image = Image.new("RGB", (50, 40), (200, 10, 10))
    assert preprocessing_for(vit)(image).shape == (3, 224, 224)
