"""`scripts/search_images.py`: the nearest neighbours of query images in an embedded dataset, printed, as JSON, or
drawn as a grid; or the near-duplicate pairs of the dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..data import load_image_dataset
from ..data.decode import decode_image
from .arguments import SearchArguments
from .duplicates import find_duplicates
from .embeddings import INDEX_FILE
from .grid import draw_grid, neighbour_tiles
from .index import EmbeddingIndex, Neighbour
from .queries import Query, embed_queries, read_query


class SourceImages:
    """The images of the embedded split, read one at a time by source row (nothing is decoded or held in advance)."""

    def __init__(self, dataset: Any, image_column: str) -> None:
        self.dataset, self.image_column = dataset, image_column

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(index)][self.image_column]

    def image(self, index: int) -> Any:
        """The decoded image of source row ``index``, or None where it cannot be read."""
        try:
            return decode_image(self[index])
        except Exception:
            return None


def source_images(info: dict[str, Any], dataset: str | None = None) -> SourceImages | None:
    """The images the index was made from (``dataset`` overrides where they are), or None with a warning when they
    cannot be loaded: searching works without them, only pictures are missing."""
    source = dataset or info.get("dataset")
    kwargs = {"name": info["dataset_config"]} if info.get("dataset_config") else {}
    try:
        images = load_image_dataset(source, info["split"], info.get("image_column", "image"), check=0, **kwargs)
    except Exception as error:
        reason = " ".join(str(error).split())[:200]
        print(
            f"warning: the indexed images ({source or 'the default dataset'}, split {info['split']!r}) cannot be "
            f"loaded ({reason}): pass --dataset where they are to see them",
            file=sys.stderr,
        )
        return None
    return SourceImages(images, info.get("image_column", "image"))


def search_images(args: SearchArguments) -> list[dict[str, Any]]:
    """Run the search ``args`` describe; returns what it printed as JSON-able dicts."""
    index = EmbeddingIndex.load(args.index, approximate=args.approximate)
    if Path(args.index).is_dir() and not (Path(args.index) / INDEX_FILE).is_file():
        index.save()  # the next search loads it instead of building it
    if args.duplicates is not None:
        pairs = [pair.to_dict() for pair in find_duplicates(index, args.duplicates)]
        if args.json:
            print(json.dumps(pairs))
        else:
            for pair in pairs:
                print(
                    f"{pair['first']:>8} {pair['second']:>8}  {pair['score']:.4f}  {pair['first_label']} / "
                    f"{pair['second_label']}"
                )
            print(f"{len(pairs)} pairs of images at least {args.duplicates} similar among {len(index):,}")
        return pairs
    needs_images = args.grid is not None or any(q.startswith("row:") for q in args.query)
    images = source_images(index.info, args.dataset) if needs_images else None
    queries = [read_query(value, index, images) for value in args.query]
    embedder = None
    if any(query.row is None for query in queries):
        from .embedder import ImageEmbedder

        embedder = ImageEmbedder.from_pretrained(args.model or index.info["model"])
    results = index.search(embed_queries(queries, index, embedder), args.k)
    report = [
        {"query": q.name, "neighbours": [n.to_dict() for n in found]} for q, found in zip(queries, results, strict=True)
    ]
    if args.json:
        print(json.dumps(report))
    else:
        for entry in report:
            print(f"query {entry['query']}")
            for rank, n in enumerate(entry["neighbours"], 1):
                label = f"  {n['label']}" if n["label"] is not None else ""
                print(f"  {rank:>3}. row {n['index']}{label}  {n['score']:.4f}")
    if args.grid:
        path = draw_search_grid(queries, results, index, images, args.grid)
        print(f"grid: {path}")
    return report


def draw_search_grid(
    queries: list[Query],
    results: list[list[Neighbour]],
    index: EmbeddingIndex,
    images: SourceImages | None,
    path: str | Path,
) -> Path:
    """The queries and their neighbours as a PNG; a row query's neighbours of another class are framed."""
    lines = []
    for query, found in zip(queries, results, strict=True):
        true_label = index.label_of(query.row) if query.row is not None else None
        caption = [Path(query.name).name if query.row is None else query.name, str(true_label or "")]
        shown = [(images.image(n.index) if images else None, n.label, n.score) for n in found]
        lines.append(neighbour_tiles(query.image, caption, shown, true_label))
    info = index.info
    title = f"Nearest neighbours in {info.get('dataset_name')} ({info['split']}) by {info.get('model_name')}"
    return draw_grid(lines, path, title)


__all__ = ["SourceImages", "draw_search_grid", "search_images", "source_images"]
