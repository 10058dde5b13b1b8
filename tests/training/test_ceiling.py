"""scripts/benchmark_pretrain.py runs end to end on the CPU and prints the ceiling/real table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

SCRIPT = str(REPO_ROOT / "scripts" / "benchmark_pretrain.py")


@pytest.mark.slow
def test_benchmark_prints_real_over_ceiling(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--backbone",
            "test_resnet",
            "--image_size",
            "32",
            "--batch_size",
            "8",
            "--steps",
            "2",
            "--warmup_steps",
            "1",
            "--log_every",
            "1",
            "--num_images",
            "16",
            "--num_workers",
            "1",
            "--output_json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(b)/(a)" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1
    row = rows[0]
    assert row["ceiling"]["views_per_s"] > 0 and row["real"]["views_per_s"] > 0
    assert row["ratio"] == row["real"]["views_per_s"] / row["ceiling"]["views_per_s"]
    assert row["real"]["peak_memory_mb"] > 0


@pytest.mark.slow
def test_bad_arguments_exit_2():
    result = subprocess.run(
        [sys.executable, SCRIPT, "--batch_size", "8", "--grad_cache_chunk", "3"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: --grad_cache_chunk must divide --batch_size"
