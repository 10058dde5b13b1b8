"""Where a --dataset or --model points: a Hub that cannot be reached ends in one line and exit code 1."""

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
def test_an_unreachable_hub_is_one_line_and_exit_code_1(tmp_path):
    env = subprocess_env(HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HOME=str(tmp_path / "hf-home"))
    env.pop("HF_HUB_OFFLINE")
    commands = {
        "dataset": pretrain_command([*TINY_PRETRAIN, "--dataset", "org/images", "--output_dir", str(tmp_path / "run")]),
        "model": [sys.executable, str(SCRIPTS / "linear_eval.py"), "--model", "org/simclr", "--no_plots"],
    }
    # both wait out the Hub client's retries at the same time
    runs = {
        name: subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, command in commands.items()
    }
    for name, run in runs.items():
        _, stderr = run.communicate(timeout=300)
        last = stderr.strip().splitlines()[-1]
        assert run.returncode == 1, (name, stderr[-3000:])
        assert last.startswith(f"error: cannot reach the Hub at {env['HF_ENDPOINT']} to load ") and "org/" in last
    assert not (tmp_path / "run").exists() and not (tmp_path / "linear_eval").exists()
