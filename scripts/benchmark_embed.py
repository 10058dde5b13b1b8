"""Embedding throughput: scripts/embed_dataset.py against transformers' pipeline("image-feature-extraction") on the
same images with the same model, side by side in one run.

    OMP_NUM_THREADS=1 python scripts/benchmark_embed.py [--images 256] [--size 500x375] [--image_size 224]

Both decode the same JPEG files and run the same model with the same batch size and DataLoader workers; the times
exclude loading the model. The script prints images/s of each, their ratio, and how close the embeddings are (the
cosine similarity of each image's two embeddings).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_images(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """``count`` photo-sized JPEGs of smooth random colours (blocks of noise, upscaled)."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    paths = []
    for i in range(count):
        pixels = torch.rand(height // 16, width // 16, 3, generator=generator).mul(255).byte().numpy()
        image = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
        paths.append(folder / "images" / "all" / f"{i:05d}.jpg")
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        image.save(paths[-1], quality=90)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", default="500x375", help="JPEG width x height (ImageNet's typical photo)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image_size", type=int, default=224, help="the model's evaluation resolution")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=1)
    args = parser.parse_args()

    import datasets
    from transformers import pipeline

    from hf_simclr import SimCLRConfig, SimCLRModel
    from hf_simclr.hub.export import save_model
    from hf_simclr.search import embed_dataset, load_embeddings, parse_embed_args

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_images(folder, args.images, width, height)
        table = datasets.Dataset.from_dict({"image": [str(p) for p in paths]}).cast_column("image", datasets.Image())
        table.to_parquet(str(folder / "images.parquet"))  # the same JPEG bytes, as a dataset
        torch.manual_seed(0)
        model = SimCLRModel(SimCLRConfig(backbone=args.backbone, image_size=args.image_size)).eval()
        save_model(model, folder / "model")
        common = ["--batch_size", str(args.batch_size), "--num_workers", str(args.num_workers)]

        extractor = pipeline("image-feature-extraction", model=str(folder / "model"), device="cpu")
        extractor([str(paths[0])], pool=True)  # warm-up
        started = time.perf_counter()
        features = extractor(
            [str(p) for p in paths], pool=True, batch_size=args.batch_size, num_workers=args.num_workers
        )
        pipeline_seconds = time.perf_counter() - started
        reference = torch.nn.functional.normalize(torch.tensor(np.asarray(features)).reshape(len(paths), -1), dim=1)

        argv = ["--model", str(folder / "model"), "--dataset", str(folder / "images.parquet"), *common]
        out = embed_dataset(parse_embed_args([*argv, "--output_dir", str(folder / "embedded")]))
        embedded, info, _ = load_embeddings(out)
        ours = torch.tensor(np.asarray(embedded["embedding"]))
        agreement = (ours * reference).sum(1)

    rows = [
        ("pipeline('image-feature-extraction')", args.images / pipeline_seconds),
        ("scripts/embed_dataset.py", info["images_per_second"]),
    ]
    print(
        f"\n{args.images} JPEGs of {args.size}, {args.backbone} at {args.image_size} px, batch {args.batch_size}, "
        f"{args.num_workers} DataLoader worker(s), {torch.get_num_threads()} torch thread(s), CPU"
    )
    print(f"{'':40} {'images/s':>10} {'ratio':>7}")
    for name, rate in rows:
        print(f"{name:40} {rate:10.1f} {rate / rows[0][1]:6.2f}x")
    print(
        f"cosine similarity of the two embeddings of each image: min {agreement.min():.4f}, mean {agreement.mean():.4f}"
    )


if __name__ == "__main__":
    main()
