"""N processes train the one-process model, two machines train the model of two processes on one, a killed worker
is restarted by the launcher and costs nothing, a hung one cannot hold the others past --ddp_timeout, and a refusal
of the main process ends every process at once.

Every run here starts real gloo processes (``accelerate launch --multi_gpu`` with ``ACCELERATE_USE_CPU=true``) and
each test asserts from the run's own records how many took part.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import torch
from helpers import TINY_PRETRAIN, free_port, kill_tree, launched_workers, pretrain_command, start_pretrain, wait_for
from pretrain_runs import FinishedRun, groupnorm_run
from safetensors.torch import load_file

from hf_simclr.hub.output_lock import OutputDirLock
from hf_simclr.hub.records import read_train_log

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

WEIGHT_TOLERANCE = 1e-4  # float32 sums in another order: the same model, not the same bits


def assert_same_training(run: FinishedRun, reference: FinishedRun) -> None:
    """The same loss at every logged step and the same final weights, to float32 rounding."""
    losses, expected = run.logged("loss"), reference.logged("loss")
    assert sorted(losses) == sorted(expected) == list(range(1, 9))
    for step, loss in expected.items():
        assert losses[step] == pytest.approx(loss, rel=1e-5), f"step {step}"
    weights, reference_weights = run.weights(), reference.weights()
    assert weights.keys() == reference_weights.keys()
    for name, tensor in reference_weights.items():
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=WEIGHT_TOLERANCE, msg=name)


def assert_processes(run: FinishedRun, count: int) -> None:
    """``count`` processes took part: the run says so, and each wrote its own random state into the checkpoint."""
    assert f"({count} process{'es' * (count > 1)})" in run.output
    assert run.results()["num_processes"] == count
    checkpoint = run.folder / "checkpoints" / "step_00000008"
    assert json.loads((checkpoint / "checkpoint.json").read_text())["num_processes"] == count
    assert sorted(p.name for p in checkpoint.glob("random_states_*")) == [
        f"random_states_{rank}.safetensors" for rank in range(count)
    ]


def test_two_processes_train_the_one_process_model(reference_runs):
    one, two = reference_runs["1 process x 16"], reference_runs["2 processes x 8"]
    assert_processes(one, 1)
    assert_processes(two, 2)
    assert_same_training(two, one)
    # not a trivial agreement: the last two steps alone moved the weights far more than the tolerance
    before = load_file(str(one.folder / "checkpoints" / "step_00000006" / "model.safetensors"))
    moved = max((one.weights()[name] - tensor).abs().max().item() for name, tensor in before.items())
    assert moved > 100 * WEIGHT_TOLERANCE


def test_two_processes_with_gradient_caching_train_the_one_process_model(reference_runs):
    chunked = reference_runs["2 processes x 8, grad cache 4"]
    assert_processes(chunked, 2)
    assert_same_training(chunked, reference_runs["1 process x 16"])


def test_two_machines_train_the_model_of_two_processes_on_one(reference_runs, groupnorm_dataset, tmp_path):
    folder, port = tmp_path / "two_machines", free_port()
    args = groupnorm_run(groupnorm_dataset, folder, 8)
    logs = [tmp_path / f"machine_{rank}.log" for rank in (0, 1)]
    machines = [
        start_pretrain(pretrain_command(args, 2, machines=2, machine_rank=rank, port=port), log)
        for rank, log in enumerate(logs)
    ]
    try:
        codes = [machine.wait(timeout=600) for machine in machines]
    finally:
        for machine in machines:
            kill_tree(machine)
    output = "".join(log.read_text() for log in logs)
    assert codes == [0, 0], output[-4000:]
    two_machines, one_machine = FinishedRun(folder, output), reference_runs["2 processes x 8"]
    assert_processes(two_machines, 2)
    # the learning rate scales with the global batch over all machines: 0.3 = 4.8 x 16 / 256
    results = two_machines.results()
    assert results["global_batch_size"] == 16 and results["learning_rate"] == pytest.approx(4.8 * 16 / 256)
    assert two_machines.logged("lr") == one_machine.logged("lr")
    weights, expected = two_machines.weights(), one_machine.weights()
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name


def test_a_killed_worker_is_restarted_by_the_launcher_and_costs_nothing(reference_runs, groupnorm_dataset, tmp_path):
    folder, log = tmp_path / "restarted", tmp_path / "restarted.log"
    launcher = start_pretrain(pretrain_command(groupnorm_run(groupnorm_dataset, folder, 8), 2, max_restarts=1), log)
    try:
        wait_for(lambda: (folder / "checkpoints" / "step_00000002").is_dir(), launcher, "the first checkpoint")
        launched_workers(launcher, 2)[1].kill()  # SIGKILL
        assert not (folder / "model.safetensors").exists(), "the run finished before the worker was killed"
        code = launcher.wait(timeout=600)
    finally:
        kill_tree(launcher)
    output = log.read_text()
    assert code == 0, output[-4000:]
    # the same command started the run afresh, and restarted it from its checkpoint
    assert "no checkpoint in" in output and "starting afresh" in output
    assert "error: lost contact with another process" in output  # the survivor's last words
    assert re.search(r"resumed from \S+step_\d{8} at step [2-7]\b", output)
    steps = [row["step"] for row in read_train_log(folder / "train_log.jsonl") if "loss" in row]
    assert steps == list(range(1, 9))  # the killed attempt's rows after its checkpoint were replaced
    weights, expected = load_file(str(folder / "model.safetensors")), reference_runs["2 processes x 8"].weights()
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name


def test_a_hung_peer_fails_the_run_after_ddp_timeout(groupnorm_dataset, tmp_path):
    folder, log = tmp_path / "hung", tmp_path / "hung.log"
    args = groupnorm_run(groupnorm_dataset, folder, 8, "--max_steps", "1000", "--ddp_timeout", "5")
    launcher = start_pretrain(pretrain_command(args, 2), log)
    try:
        wait_for(lambda: (folder / "checkpoints" / "step_00000002").is_dir(), launcher, "the first checkpoint")
        workers = launched_workers(launcher, 2)
        survivor, hung = workers[0], workers[1]
        hung.suspend()  # SIGSTOP: alive, its connections open, answering nothing
        survivor.wait(timeout=300)  # without --ddp_timeout it would wait 30 minutes
    finally:
        kill_tree(launcher)
    lines = [line for line in log.read_text().splitlines() if line.startswith("error: ")]
    assert lines and lines[0].startswith("error: lost contact with another process")
    assert "--ddp_timeout 5 s" in lines[0] and "--resume_from_checkpoint latest" in lines[0]


def test_a_run_refused_by_the_lock_ends_at_once_on_every_process_and_every_restart(groupnorm_dataset, tmp_path):
    # only the main process takes the output folder's lock: the others must end with its refusal, not wait for it
    # until --ddp_timeout and then claim a lost peer; and both attempts of both workers must reach that refusal:
    # restarted workers that met their predecessors' addresses in the launcher's store would instead wait in the
    # process group's setup until the timeout
    folder, log = tmp_path / "taken", tmp_path / "taken.log"
    args = [*TINY_PRETRAIN, "--dataset", str(groupnorm_dataset / "train.parquet"), "--output_dir", str(folder)]
    with OutputDirLock(folder):  # another run's
        started = time.monotonic()
        launcher = start_pretrain(pretrain_command([*args, "--ddp_timeout", "120"], 2, max_restarts=1), log)
        try:
            code = launcher.wait(timeout=600)
        finally:
            kill_tree(launcher)
        seconds = time.monotonic() - started
    output = log.read_text()
    refusals = [line for line in output.splitlines() if line.startswith(f"error: --output_dir {folder} is in use")]
    assert code != 0 and len(refusals) == 4, output[-4000:]  # 2 workers x 2 attempts
    assert "lost contact" not in output and seconds < 120, output[-4000:]  # nobody waited for the timeout
