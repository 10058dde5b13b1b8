"""The training log reader and the training curves."""

from __future__ import annotations

import json

from hf_simclr.evaluation.plots import plot_training_curves
from hf_simclr.hub.records import read_train_log


def test_train_log_reader_and_curves(tmp_path):
    log = tmp_path / "train_log.jsonl"
    rows = [{"step": 0, "epoch": 0.0, "knn_top1_k20_random_init": 0.3}]
    rows += [{"step": s, "epoch": s / 10, "loss": 5 - s / 10, "lr": 0.1} for s in range(1, 21)]
    rows += [{"step": s, "epoch": s / 10, "knn_top1_k20": 0.5 + s / 100} for s in (10, 20)]
    log.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 21, "lo')  # cut short by a kill
    assert read_train_log(log) == rows
    assert plot_training_curves(log, tmp_path / "curves.png").stat().st_size > 1000
    assert plot_training_curves([{"step": 1, "lr": 0.1}], tmp_path / "none.png") is None


def test_a_split_is_named_without_doubled_parentheses():
    from hf_simclr.evaluation.plots import split_label

    assert split_label("Fashion-MNIST (embedded subset)", "test") == "Fashion-MNIST (embedded subset), test split"
