"""scripts/benchmark_data.py runs end to end (tiny sizes) and prints every row of its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, SCRIPTS

SCRIPT = SCRIPTS / "benchmark_data.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_quick_run_prints_every_row(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = run_script("--quick", "--no-lightly", "--device", "cpu", "--output_json", str(output))
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert "lightly: skipped (--no-lightly); row (a) left out" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("part "))
    table = lines[header + 1 : header + 4]
    assert table[0].startswith("(b) CPU part TwoViewTransform") and "1 core" in table[0]
    assert table[1].startswith("(b) CPU part TwoViewTransform") and "workers" in table[1]
    assert table[2].startswith("(c) SimCLRGPUAugment imagenet, eager") and table[2].endswith("views/s")
    results = json.loads(output.read_text())
    assert [row["unit"] for row in results["rows"]] == ["images/s", "images/s", "views/s"]
    assert all(row["rate"] > 0 for row in results["rows"])


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2() -> None:
    result = run_script("--quick", "--num_images", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --num_images must be at least 1 (got 0)"]
