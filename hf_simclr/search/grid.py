"""A picture of a search: one line per query, the query then its neighbours, each with its label and score below it
and, where the true label is known, the neighbours of another class framed in red. Drawn with PIL alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

TILE = 112
CAPTION = 30  # two lines of text below each tile
GAP = 6
QUERY_GAP = 18  # between the query and its neighbours
WRONG, RIGHT, QUERY = (220, 30, 30), (40, 160, 60), (40, 90, 200)


@dataclass
class Tile:
    """One picture of the grid: an image (or None for a blank), two lines of caption, and a frame colour."""

    image: Image.Image | None
    caption: Sequence[str]
    frame: tuple[int, int, int] | None = None


def _font(size: int = 11) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    scale = TILE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BICUBIC  # small images stay crisp
    return image.resize(size, resample)


def neighbour_tiles(
    query: Image.Image | None,
    query_caption: Sequence[str],
    neighbours: Sequence[tuple[Image.Image | None, Any, float]],
    true_label: Any = None,
) -> list[Tile]:
    """A grid line: the query, then each ``(image, label, score)``; with ``true_label``, a neighbour of another
    label is framed in red (and one of the same label in green)."""
    tiles = [Tile(query, query_caption, QUERY)]
    for image, label, score in neighbours:
        frame = None if true_label is None else (RIGHT if label == true_label else WRONG)
        caption = [str(label) if label is not None else "", f"{score:.3f}"]
        tiles.append(Tile(image, caption, frame))
    return tiles


def draw_grid(lines: Sequence[Sequence[Tile]], path: str | Path, title: str | None = None) -> Path:
    """Draw ``lines`` of tiles (the first of each line set apart: the query) to the PNG ``path``."""
    font = _font()
    columns = max(len(line) for line in lines)
    header = 22 if title else 0
    width = GAP + columns * (TILE + GAP) + QUERY_GAP
    height = header + GAP + len(lines) * (TILE + CAPTION + GAP)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((GAP, 5), title, fill="black", font=_font(13))
    for r, line in enumerate(lines):
        top = header + GAP + r * (TILE + CAPTION + GAP)
        for c, tile in enumerate(line):
            left = GAP + c * (TILE + GAP) + (QUERY_GAP if c else 0)
            if tile.image is not None:
                picture = _fit(tile.image)
                canvas.paste(picture, (left + (TILE - picture.width) // 2, top + (TILE - picture.height) // 2))
            else:
                draw.rectangle((left, top, left + TILE - 1, top + TILE - 1), fill=(235, 235, 235))
            if tile.frame is not None:
                draw.rectangle((left - 2, top - 2, left + TILE + 1, top + TILE + 1), outline=tile.frame, width=3)
            for i, text in enumerate(tile.caption[:2]):
                draw.text((left, top + TILE + 3 + 13 * i), _shorten(text, draw, font), fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _shorten(text: str, draw: ImageDraw.ImageDraw, font: Any) -> str:
    while text and draw.textlength(text, font=font) > TILE:
        text = text[:-2] + "…"
    return text


__all__ = ["Tile", "draw_grid", "neighbour_tiles"]
