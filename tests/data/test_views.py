"""Two-view batches: disjoint per process, resumable mid-epoch, full even when images are unreadable, and views
that depend on the image alone, never on the process or batch it lands in."""

from __future__ import annotations

import datasets
import torch

from hf_simclr.augment import SimCLRGPUAugment, TwoViewTransform
from hf_simclr.data import EpochBatchSampler, TwoViewDataset, collate_two_views, load_default_splits


def test_batches_are_disjoint_across_processes_and_resumable():
    samplers = [EpochBatchSampler(100, 8, rank, 3, seed=1) for rank in range(3)]
    for s in samplers:
        s.set_epoch(2)
    batches = [list(s) for s in samplers]
    seen = [i for per_rank in batches for batch in per_rank for i in batch]
    assert len(seen) == len(set(seen)) == 4 * 8 * 3
    samplers[1].set_epoch(2, start_step=3)
    assert list(samplers[1]) == batches[1][3:]
    samplers[1].set_epoch(3)
    assert list(samplers[1]) != batches[1]


def test_unreadable_images_are_replaced_and_named():
    good = list(load_default_splits()["train"].select(range(6))["image"])
    broken = [{"bytes": b"not an image", "path": None}, {"bytes": good[0]["bytes"][:40], "path": None}]
    views = TwoViewDataset(datasets.Dataset.from_dict({"image": good + broken}), TwoViewTransform(size=16), seed=0)
    loader = torch.utils.data.DataLoader(views, batch_size=8, collate_fn=collate_two_views)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == batch["pixel_values_2"].shape == (8, 3, 16, 16)  # the batch keeps its size
    assert {index for index, _ in batch["unreadable"]} == {6, 7}  # each replaced image, by its index
    assert {name for _, name in batch["unreadable"]} == {"row 6", "row 7"}  # no file: named by its row
    assert torch.equal(views[3]["pixel_values"], views[3]["pixel_values"])  # same (seed, epoch, index), same views


def test_long_runs_of_unreadable_images_are_tolerated():
    # 9 of 10 images unreadable: runs of 17 and more failed draws are common, and none may stop a worker
    good = list(load_default_splits()["train"].select(range(6))["image"])
    images = [good[i // 10] if i % 10 == 0 else {"bytes": b"broken", "path": None} for i in range(60)]
    views = TwoViewDataset(datasets.Dataset.from_dict({"image": images}), TwoViewTransform(size=16), seed=0)
    loader = torch.utils.data.DataLoader(views, batch_size=20, num_workers=1, collate_fn=collate_two_views, timeout=120)
    batches = list(loader)
    assert [len(b["pixel_values"]) for b in batches] == [20, 20, 20]
    assert sum(len(b["unreadable"]) for b in batches) > 54  # each replaced image, each time
    assert {index for b in batches for index, _ in b["unreadable"]} == {i for i in range(60) if i % 10}


def test_every_random_choice_of_a_view_depends_on_the_sample_alone():
    # the views one process with a batch of 16 trains on are those four processes with a batch of 4 train on:
    # crop, flip, and the accelerator's jitter (factors and order), grayscale and blur all follow the image
    dataset = load_default_splits()["train"].select(range(32))
    views = TwoViewDataset(dataset, TwoViewTransform(size=24), seed=5)
    augment = SimCLRGPUAugment("imagenet")  # every operation on, blur included

    def trained_views(world: int, batch_size: int, epoch: int) -> dict[tuple[int, int], torch.Tensor]:
        seen = {}
        views.set_epoch(epoch)
        for rank in range(world):
            sampler = EpochBatchSampler(len(views), batch_size, rank, world, seed=5)
            sampler.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(views, batch_sampler=sampler, collate_fn=collate_two_views)
            for indices, batch in zip(sampler, loader, strict=True):
                for view, key in enumerate(("pixel_values", "pixel_values_2")):
                    out = augment(batch[key], batch["augment_uniforms"][:, view])
                    seen.update({(index, view): out[row] for row, index in enumerate(indices)})
        return seen

    one, four = trained_views(1, 16, epoch=1), trained_views(4, 4, epoch=1)
    assert one.keys() == four.keys() == {(index, view) for index in range(32) for view in (0, 1)}
    for key, expected in one.items():
        assert torch.equal(four[key], expected), key
    # and they are random: the two views of an image differ, and so do an image's views in another epoch
    assert all(not torch.equal(one[(index, 0)], one[(index, 1)]) for index in range(32))
    other_epoch = trained_views(1, 16, epoch=2)
    assert all(not torch.equal(one[key], other_epoch[key]) for key in one)
