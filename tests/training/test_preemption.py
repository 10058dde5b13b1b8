"""Preemption loses nothing: on SIGTERM (scancel, SLURM preemption, Kubernetes) or SIGUSR1 (``sbatch
--signal=USR1@120``), sent to the launcher or to one worker, every process finishes its step, they save a checkpoint
of the step they agree on, and the run ends in one line that says how it resumes; the command it prints, pasted into
a shell, resumes the same launch, and the run ends bitwise where an uninterrupted one ends.

The workers are paused (SIGSTOP) while the signal is sent, so that the 8-step runs cannot end before it arrives.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys

import psutil
import pytest
import torch
from helpers import PRETRAIN, kill_tree, launched_workers, pretrain_command, start_pretrain, subprocess_env, wait_for
from pretrain_runs import groupnorm_run
from safetensors.torch import load_file

from hf_simclr.cli import run_cli
from hf_simclr.hub.records import read_train_log
from hf_simclr.training import parse_args, pretrain
from hf_simclr.training.checkpoint import checkpoint_dirs

pytestmark = pytest.mark.slow

PREEMPTED = re.compile(
    r"preempted: (SIG\w+) stopped the run at step (\d+), after a checkpoint of that step: nothing is lost\. "
    r"Resume with: (.*)"
)


def _logged_steps(folder) -> list[int]:
    log = folder / "train_log.jsonl"
    return [row["step"] for row in read_train_log(log) if "loss" in row] if log.is_file() else []


def _checkpointed_steps(folder) -> list[int]:
    return [int(path.name[5:]) for path in checkpoint_dirs(folder / "checkpoints")]


def _signal_while_paused(workers: list[psutil.Process], send) -> None:
    """``send()`` with the workers paused, so that none of them steps on meanwhile."""
    for worker in workers:
        worker.suspend()
    try:
        send()
    finally:
        for worker in workers:
            worker.resume()


def _assert_equal_weights(folder, expected: dict[str, torch.Tensor]) -> None:
    weights = load_file(str(folder / "model.safetensors"))
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name


@pytest.mark.distributed
def test_two_processes_preempted_by_any_signal_resume_with_the_printed_command_bitwise(
    reference_runs, groupnorm_dataset, tmp_path
):
    folder, log = tmp_path / "preempted", tmp_path / "preempted.log"
    # no scheduled checkpoint: every checkpoint is one a preemption wrote; a DataLoader worker, which the launcher's
    # SIGTERM reaches too (it signals each worker's process group)
    args = groupnorm_run(groupnorm_dataset, folder, 8, "--checkpointing_steps", "1000", "--num_workers", "1")
    launcher = start_pretrain(pretrain_command(args, 2, max_restarts=1), log)
    try:
        # SIGUSR1 to one worker alone: both stop at the same step and save it; the launcher restarts them from it
        wait_for(lambda: _logged_steps(folder), launcher, "the first step")
        workers = launched_workers(launcher, 2)
        _signal_while_paused(list(workers.values()), lambda: workers[1].send_signal(signal.SIGUSR1))
        wait_for(lambda: _checkpointed_steps(folder), launcher, "the checkpoint of the first preemption")
        (first,) = _checkpointed_steps(folder)
        # SIGTERM to the launcher: it passes it on to the restarted workers, and waits for them
        wait_for(lambda: max(_logged_steps(folder)) > first, launcher, "a step after the restart")
        restarted = launched_workers(launcher, 2)
        assert set(restarted.values()).isdisjoint(workers.values())
        _signal_while_paused(list(restarted.values()), lambda: launcher.send_signal(signal.SIGTERM))
        code = launcher.wait(timeout=300)
    finally:
        kill_tree(launcher)
    output = log.read_text()
    assert code == 128 + signal.SIGTERM, output[-4000:]
    # one line each time, from the main process
    found = [PREEMPTED.fullmatch(line) for line in output.splitlines() if line.startswith("preempted")]
    assert len(found) == 2 and all(found), output[-4000:]
    (usr1, at_first, _), (term, second, command) = ((m[1], int(m[2]), m[3]) for m in found)
    assert (usr1, at_first, term) == ("SIGUSR1", first, "SIGTERM")
    assert 0 < first < second < 8 and _checkpointed_steps(folder) == [first, second]
    assert not (folder / "results.json").exists()

    # the printed command carries the launch's environment and options: pasted into a shell without them, it resumes
    # with two processes
    assert command.startswith("ACCELERATE_USE_CPU=true ") and " --multi_gpu --num_processes 2 " in command
    env = {key: value for key, value in subprocess_env().items() if key != "ACCELERATE_USE_CPU"}
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "(2 processes)" in result.stdout
    assert f"resumed from {folder / 'checkpoints' / f'step_{second:08d}'} at step {second}" in result.stdout
    assert _logged_steps(folder) == list(range(1, 9))
    _assert_equal_weights(folder, reference_runs["2 processes x 8"].weights())


def test_one_process_under_accelerates_simple_launcher_saves_its_step_on_sigterm(
    reference_runs, groupnorm_dataset, tmp_path, capsys
):
    folder, log = tmp_path / "simple", tmp_path / "simple.log"
    args = groupnorm_run(groupnorm_dataset, folder, 16, "--checkpointing_steps", "1000")
    launch = ["-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    launcher = start_pretrain([sys.executable, *launch, PRETRAIN, *args], log)
    try:
        wait_for(lambda: _logged_steps(folder), launcher, "the first step")
        (worker,) = psutil.Process(launcher.pid).children()
        # accelerate passes SIGTERM on to the script, and kills it 5 s later
        _signal_while_paused([worker], lambda: launcher.send_signal(signal.SIGTERM))
        code = launcher.wait(timeout=300)
    finally:
        kill_tree(launcher)
    output = log.read_text()
    assert code == 128 + signal.SIGTERM, output[-4000:]
    (line,) = [PREEMPTED.fullmatch(line) for line in output.splitlines() if line.startswith("preempted")]
    step = int(line[2])
    assert line[1] == "SIGTERM" and 0 < step < 8 and _checkpointed_steps(folder) == [step]
    assert shlex.split(line[3])[-2:] == ["--resume_from_checkpoint", "latest"]
    assert " -m accelerate.commands.launch --num_processes 1 " in line[3]

    assert run_cli(lambda: pretrain(parse_args(args))) == 0
    assert f"resumed from {folder / 'checkpoints' / f'step_{step:08d}'} at step {step}" in capsys.readouterr().out
    _assert_equal_weights(folder, reference_runs["1 process x 16"].weights())
    assert json.loads((folder / "results.json").read_text())["steps"] == 8
