"""Similar-image search with a trained encoder: embed a dataset (:mod:`.embed`, through the fast preprocessing of
:mod:`.preprocess` and :mod:`.embedder`) into an embedded dataset (:mod:`.embeddings`, pushed by :mod:`.publish`),
index it with FAISS (:mod:`.index`), query it with images, URLs or rows (:mod:`.queries`), draw the neighbours
(:mod:`.grid`) and list near-duplicates (:mod:`.duplicates`); :mod:`.search` is `scripts/search_images.py`."""

from ..lazy_imports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".arguments": ["EmbedArguments", "SearchArguments", "parse_embed_args", "parse_search_args"],
        ".duplicates": ["DuplicatePair", "find_duplicates"],
        ".embed": ["embed_dataset"],
        ".embedder": ["ImageEmbedder"],
        ".embeddings": ["load_embeddings", "read_info"],
        ".grid": ["Tile", "draw_grid", "neighbour_tiles"],
        ".index": ["APPROXIMATE_ABOVE", "EmbeddingIndex", "Neighbour"],
        ".preprocess": ["FastPreprocessing", "fast_preprocessing", "preprocessing_for"],
        ".publish": ["dataset_card", "push_embeddings"],
        ".queries": ["Query", "embed_queries", "read_query"],
        ".search": ["search_images", "source_images"],
    },
)
