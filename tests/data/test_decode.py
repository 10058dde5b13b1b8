"""Decoding any image to upright RGB, and JPEGs at reduced size when every crop allows it."""

from __future__ import annotations

import io

import numpy as np
import torchvision.transforms.v2.functional as TF
from helpers import exif_rotated_jpeg, make_messy_folder, noise_jpeg
from PIL import Image, JpegImagePlugin

from hf_simclr.data import decode_crops, decode_image


def test_awkward_images_decode_to_rgb(tmp_path):
    make_messy_folder(tmp_path)
    assert Image.open(tmp_path / "good" / "sixteen.png").mode.startswith("I")
    for path in sorted((tmp_path / "good").iterdir()):
        image = decode_image(str(path))
        assert image.mode == "RGB"
    rotated = decode_image({"bytes": exif_rotated_jpeg(), "path": None})
    assert rotated.size == (20, 40)  # upright: portrait
    top, bottom = rotated.getpixel((10, 5)), rotated.getpixel((10, 35))
    assert top[0] > 200 and bottom[2] > 200  # red (stored left) ends on top after a clockwise turn
    transparent = decode_image(str(tmp_path / "good" / "rgba.png"))
    assert transparent.getpixel((0, 0)) == (255, 255, 255)  # alpha composited on white
    sixteen = np.asarray(decode_image(str(tmp_path / "good" / "sixteen.png")))
    assert sixteen.max() > 200 and sixteen.min() < 50  # 16-bit range rescaled, not clipped


def test_reduced_size_jpeg_decoding(monkeypatch):
    data = noise_jpeg(800, 600)
    requests = []
    jpeg_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):
        requests.append(size)
        return jpeg_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    full = decode_crops({"bytes": data}, 64, lambda w, h: [(0, 0, w, h)])[0]
    assert requests and requests[-1][0] <= 800 // 2  # decoded at reduced size
    reference = Image.open(io.BytesIO(data)).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    diff = (full.float() - TF.pil_to_tensor(reference).float()).abs().mean()
    assert diff < 4.0
    requests.clear()
    decode_crops({"bytes": data}, 64, lambda w, h: [(0, 0, 100, 100)])  # a small crop needs full resolution
    assert not requests or requests[-1][0] >= 800


def test_crops_are_resized_bicubically_on_both_decode_paths():
    # an 8 px checkerboard at 40 px: bicubic and bilinear resizing to 32 px differ at every edge
    board = ((np.indices((40, 40)) // 8).sum(0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([board] * 3, axis=-1))
    box = [(0.0, 0.0, 40.0, 40.0)]

    png = io.BytesIO()
    image.save(png, format="PNG")
    through_pil = decode_crops({"bytes": png.getvalue()}, 32, lambda w, h: box)[0]
    assert (through_pil == TF.pil_to_tensor(image.resize((32, 32), Image.Resampling.BICUBIC))).all()
    assert not (through_pil == TF.pil_to_tensor(image.resize((32, 32), Image.Resampling.BILINEAR))).all()

    jpeg = io.BytesIO()
    image.save(jpeg, format="JPEG", quality=95)
    through_tensor = decode_crops({"bytes": jpeg.getvalue()}, 32, lambda w, h: box)[0]  # torchvision's decoder
    pixels = TF.pil_to_tensor(Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB"))
    bicubic = TF.resize(pixels, [32, 32], TF.InterpolationMode.BICUBIC, antialias=True)
    bilinear = TF.resize(pixels, [32, 32], TF.InterpolationMode.BILINEAR, antialias=True)
    assert (through_tensor.int() - bicubic.int()).abs().max() <= 1  # PIL and libjpeg-turbo may round apart
    assert (through_tensor.int() - bilinear.int()).abs().max() > 8
