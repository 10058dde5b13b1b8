"""scripts/show_augmentations.py: a PNG of images and their two views, one line and exit code 2 on bad input."""

from __future__ import annotations

from helpers import load_script
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
