"""scripts/show_augmentations.py: a PNG of images and their two views, one line and exit code 2 on bad input."""

from __future__ import annotations

import subprocess

from helpers import REPO_ROOT, load_script
from PIL import Image


def test_show_augmentations_writes_png(tmp_path, capsys):
    show = load_script("show_augmentations")
    output = tmp_path / "grid.png"
    assert show.main(["--output", str(output), "--num_images", "3", "--seed", "1"]) == 0
    grid = Image.open(output)
    assert grid.format == "PNG" and grid.height > grid.width / 3
    assert show.main(["--dataset", str(tmp_path / "missing"), "--output", str(tmp_path / "x.png")]) == 2
    assert show.main(["--num_images", "0", "--output", str(tmp_path / "x.png")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error:") for line in errors)


def test_the_default_grid_goes_to_the_ignored_outputs_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert load_script("show_augmentations").main(["--num_images", "2"]) == 0
    assert Image.open(tmp_path / "outputs" / "augmentations.png").format == "PNG"
    assert capsys.readouterr().out.startswith("wrote outputs/augmentations.png")
    # what the scripts write by default stays out of git
    for path in ("outputs/augmentations.png", "outputs/simclr/model.safetensors"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT).returncode == 0, path
