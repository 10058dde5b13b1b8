"""Where a --dataset or --model points: a Hub that cannot be reached ends in one line and exit code 1.

"Cannot be reached" is a real refused connection to 127.0.0.1 for the dataset, and offline mode for the model: both end
in the Hub client's error for a file neither on the Hub nor in the cache, and offline mode saves half a minute of the
client's retries.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from helpers import SCRIPTS, TINY_PRETRAIN, pretrain_command, subprocess_env


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.hub
def test_a_hub_that_cannot_be_reached_is_one_line_and_exit_code_1(tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    unreachable = subprocess_env(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"))
    del unreachable["HF_HUB_OFFLINE"]
    offline = subprocess_env(HF_HOME=str(tmp_path / "hf-home"))  # HF_HUB_OFFLINE=1: the same error, without retries
    runs = {  # at the same time: the Hub client retries a refused connection for half a minute
        "dataset": (pretrain_command([*TINY_PRETRAIN, "--dataset", "org/images", "--output_dir", "run"]), unreachable),
        "model": ([sys.executable, str(SCRIPTS / "linear_eval.py"), "--model", "org/simclr", "--no_plots"], offline),
    }
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = {name: subprocess.Popen(command, env=env, cwd=tmp_path, **pipes) for name, (command, env) in runs.items()}
    expected = {
        "dataset": f"error: cannot reach the Hub at {endpoint} to load dataset org/images (",
        "model": "error: cannot reach the Hub at https://huggingface.co to load model org/simclr (HF_HUB_OFFLINE is",
    }
    for name, run in started.items():
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 1, (name, stderr[-3000:])
        assert stderr.strip().splitlines()[-1].startswith(expected[name]), stderr[-2000:]
    assert not (tmp_path / "run").exists() and not (tmp_path / "linear_eval").exists()
