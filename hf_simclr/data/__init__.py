"""Where the images come from: a Hub id, an image folder, parquet/arrow files, in memory or streamed, or the embedded
default data (:mod:`.sources`); robust decoding (:mod:`.decode`); batches of two views for pretraining
(:mod:`.views`); the dataset flags every script shares (:mod:`.arguments`); images with segmentation masks
(:mod:`.segmentation`) and a small segmentation dataset made from the embedded images (:mod:`.pasted_objects`)."""

from ..lazy_imports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".arguments": ["DatasetArguments", "dataset_load_kwargs"],
        ".decode": ["Box", "crop_resize", "decode_crops", "decode_image", "open_image", "to_rgb"],
        ".sources": [
            "DEFAULT_DATA_DIR",
            "DEFAULT_LABEL_COLUMN",
            "DEFAULT_SPLITS",
            "HELD_OUT_SPLITS",
            "apply_transform",
            "check_images",
            "class_names_of",
            "encode_labels",
            "find_held_out_split",
            "find_label_column",
            "load_default_splits",
            "load_image_dataset",
            "load_labelled_split",
            "shard_for_process",
        ],
        ".views": [
            "EpochBatchSampler",
            "ReadableOnly",
            "TwoViewDataset",
            "collate_two_views",
            "collate_views",
            "image_name",
            "read_or_replace",
        ],
    },
)
