"""EXIF orientation: a photo stored sideways with an orientation tag is read upright.

Cameras store the sensor's pixels and an EXIF tag saying how to turn them; every
viewer applies it.  sksplice applies it wherever it reads an image file
(``encode_images``, ``SpliceTransformer`` on paths, ``decompose-dir``).
"""

from __future__ import annotations

import numpy as np
import pytest
from _clip_helpers import TINY

from sksplice import get_encoder
from sksplice.shards import read_images

# EXIF orientation -> how the stored pixels are turned from the upright image
STORED = {
    3: lambda a: np.rot90(a, 2),
    6: lambda a: np.rot90(a, 1),  # stored turned a quarter anticlockwise: shown turned back
    8: lambda a: np.rot90(a, -1),
}


def _upright():
    """An asymmetric picture (32 x 48, block-aligned so JPEG turns it nearly losslessly)."""
    a = np.zeros((32, 48, 3), dtype=np.uint8)
    a[:16, :, 0] = 230  # red on top
    a[:, :16, 2] = 200  # blue on the left
    a[24:, 32:, 1] = 180  # a green block bottom right
    return a


def _save(path, array, orientation=None):
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(array))
    kwargs = {"quality": 100, "subsampling": 0}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    image.save(path, format="JPEG", **kwargs)
    return path


@pytest.fixture
def photos(tmp_path):
    upright = _save(tmp_path / "upright.jpg", _upright())
    turned = {o: _save(tmp_path / f"tagged-{o}.jpg", f(_upright()), o) for o, f in STORED.items()}
    untagged = _save(tmp_path / "sideways.jpg", STORED[6](_upright()))
    return upright, turned, untagged


@pytest.mark.parametrize("orientation", list(STORED))
def test_tagged_photos_are_read_upright(photos, orientation):
    upright, turned, _ = photos
    (reference,), _, _ = read_images([upright])
    (image,), ok, bad = read_images([turned[orientation]])
    assert ok == [0] and bad == []
    assert image.size == reference.size == (48, 32)
    diff = np.abs(np.asarray(image, float) - np.asarray(reference, float))
    assert diff.mean() < 2.0  # JPEG noise only


def test_a_tagged_photo_embeds_as_the_upright_one(photos, tiny_checkpoint, offline_sandbox):
    upright, turned, untagged = photos
    enc = get_encoder((TINY, str(tiny_checkpoint)), device="cpu")
    E = enc.encode_images([str(upright), str(turned[6]), str(untagged)])
    E = np.asarray(E, dtype=np.float64)
    same = float(E[0] @ E[1])
    sideways = float(E[0] @ E[2])
    assert same > 0.999, same
    assert 1 - same < (1 - sideways) / 10, (same, sideways)
