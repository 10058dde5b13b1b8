"""Decoding any image to upright RGB, and JPEGs at reduced size when every crop allows it."""

from __future__ import annotations

import io

import numpy as np
import torchvision.transforms.v2.functional as TF
from helpers import exif_rotated_jpeg, jpeg_bytes, make_messy_folder, noise_jpeg
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


def test_decode_image_reduces_a_jpeg_only_as_far_as_asked():
    data = noise_jpeg(1600, 1200)
    seen = []

    def short_side_at_least(side: int):
        def max_reduction(width: int, height: int) -> float:
            seen.append((width, height))
            return min(width, height) / side

        return max_reduction

    assert decode_image({"bytes": data}).size == (1600, 1200)
    assert decode_image({"bytes": data}, short_side_at_least(100)).size == (200, 150)  # 1/8
    assert decode_image({"bytes": data}, short_side_at_least(400)).size == (800, 600)  # 1/2: 1/4 would leave 300
    assert seen == [(1600, 1200)] * 2  # the size before decoding
    # below a halving nothing changes: the same pixels as a plain decode
    same = decode_image({"bytes": data}, short_side_at_least(700))
    assert np.array_equal(np.asarray(same), np.asarray(decode_image({"bytes": data})))
    # the reduced image is the full one at lower resolution
    reference = decode_image({"bytes": data}).resize((200, 150), Image.Resampling.BOX)
    reduced = decode_image({"bytes": data}, short_side_at_least(100))
    assert np.abs(np.asarray(reduced, dtype=float) - np.asarray(reference, dtype=float)).mean() < 4.0


def test_decode_image_reduces_an_exif_rotated_jpeg_by_its_upright_size():
    image = Image.new("RGB", (1200, 600), (255, 0, 0))
    image.paste((0, 0, 255), (600, 0, 1200, 600))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise: upright 600 x 1200
    data = jpeg_bytes(image, exif=exif.tobytes(), quality=95)
    seen = []
    upright = decode_image({"bytes": data}, lambda w, h: seen.append((w, h)) or min(w, h) / 150)
    assert seen == [(600, 1200)] and upright.size == (150, 300)
    assert upright.getpixel((75, 20))[0] > 200 and upright.getpixel((75, 280))[2] > 200
