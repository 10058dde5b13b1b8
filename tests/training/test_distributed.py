"""The process group's pieces that need no second process: which errors are a lost peer and what they say, and
when the restart-safe rendezvous is used (the multi-process behaviour is in test_scaling.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hf_simclr.training.distributed import RESTART_SAFE_SCHEME, is_collective_failure, lost_peer, process_group_kwargs


def test_a_gloo_timeout_or_lost_connection_is_one_line_naming_the_timeout():
    timeout = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:129] Timed out waiting 5000ms for send "
        "operation to complete"
    )
    reset = RuntimeError(
        "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Read error [127.0.0.1]:1942: Connection reset by "
        "peer. This is typically caused by a remote worker hanging or bugs in the application.\nmore"
    )
    assert is_collective_failure(timeout) and is_collective_failure(reset)
    assert not is_collective_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    message = str(lost_peer(timeout, 5, Path("out/checkpoints")))
    assert message == (
        "lost contact with another process (Timed out waiting 5000ms for send operation to complete): it died or did "
        "not answer within --ddp_timeout 5 s; checkpoints are kept in out/checkpoints: rerun with "
        "--resume_from_checkpoint latest"
    )
    assert "(Read error [127.0.0.1]:1942: Connection reset by peer)" in str(lost_peer(reset, 600, Path("c")))


def test_the_restart_safe_rendezvous_is_used_under_torchrun_only(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    plain = process_group_kwargs(30)
    assert plain.init_method is None and plain.timeout == timedelta(seconds=30)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert process_group_kwargs(30).init_method == f"{RESTART_SAFE_SCHEME}://"
