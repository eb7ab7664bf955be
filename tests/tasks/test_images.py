"""Decoding: the same pixels as PIL (TorchCodec or PIL's fallback), upright by EXIF orientation as PIL's
``ImageOps.exif_transpose`` turns them, for JPEG, PNG, grey, CMYK and a PNG saved under a .jpg name."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from mobilenets.tasks.data.images import BadRecordError, decode_image_file, read_image


def _photo(size=(40, 24)) -> Image.Image:
    """An image with no symmetry, so every flip and rotation changes it."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[..., 0] = np.arange(size[0])[None, :] * 6
    pixels[..., 1] = np.arange(size[1])[:, None] * 10
    pixels[:4, :6, 2] = 255
    return Image.fromarray(pixels)


def _pil_upright(path) -> torch.Tensor:
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    return torch.from_numpy(np.asarray(upright).copy()).permute(2, 0, 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_pil_applies_it(orientation, tmp_path):
    path = tmp_path / f"phone_{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    _photo().save(path, quality=95, exif=exif)
    assert torch.equal(decode_image_file(path), _pil_upright(path))
    assert torch.equal(decode_image_file(path.read_bytes()), _pil_upright(path))  # shard samples are bytes


@pytest.mark.parametrize("mode,name", [("L", "grey.jpg"), ("CMYK", "cmyk.jpg"), ("RGB", "png_named.jpg"),
                                       ("RGB", "old.bmp"), ("RGBA", "alpha.png")])
def test_formats_decode_to_pils_rgb(mode, name, tmp_path):
    path = tmp_path / name
    image = _photo().convert(mode)
    image.save(path, format="PNG" if name.endswith((".png", "png_named.jpg")) else None)
    assert torch.equal(decode_image_file(path), _pil_upright(path))


def test_damaged_files_are_named(tmp_path):
    path = tmp_path / "cut.jpg"
    _photo().save(path, quality=95)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(BadRecordError, match=r"cut.jpg \(train.csv:7\): unreadable image"):
        read_image(path, "train.csv:7")


def test_pil_fallback_turns_photos_upright_too(tmp_path, monkeypatch):
    import mobilenets.tasks.data.images as images

    monkeypatch.setattr(images, "_TORCHCODEC", False)  # where TorchCodec cannot be imported
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    _photo().save(path, quality=95, exif=exif)
    assert decode_image_file(path).shape == (3, 40, 24) and torch.equal(decode_image_file(path), _pil_upright(path))
