"""Where the images come from: a Hub id, an image folder, parquet/arrow files, in memory or streamed, or the embedded
default data (:mod:`.sources`); robust decoding (:mod:`.decode`); batches of two views for pretraining
(:mod:`.views`); and the dataset flags every script shares (:mod:`.arguments`)."""

from .arguments import DatasetArguments
from .decode import Box, decode_crops, decode_image, open_image, to_rgb
from .sources import (
    DEFAULT_DATA_DIR,
    DEFAULT_LABEL_COLUMN,
    DEFAULT_SPLITS,
    HELD_OUT_SPLITS,
    apply_transform,
    check_images,
    class_names_of,
    dataset_load_kwargs,
    encode_labels,
    find_held_out_split,
    find_label_column,
    load_default_splits,
    load_image_dataset,
    load_labelled_split,
    shard_for_process,
)
from .views import (
    EpochBatchSampler,
    ReadableOnly,
    TwoViewDataset,
    collate_two_views,
    collate_views,
    read_or_replace,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_LABEL_COLUMN",
    "DEFAULT_SPLITS",
    "HELD_OUT_SPLITS",
    "Box",
    "DatasetArguments",
    "EpochBatchSampler",
    "ReadableOnly",
    "TwoViewDataset",
    "apply_transform",
    "check_images",
    "class_names_of",
    "collate_two_views",
    "collate_views",
    "dataset_load_kwargs",
    "encode_labels",
    "decode_crops",
    "decode_image",
    "find_held_out_split",
    "find_label_column",
    "load_default_splits",
    "load_image_dataset",
    "load_labelled_split",
    "open_image",
    "read_or_replace",
    "shard_for_process",
    "to_rgb",
]
