"""Image inputs: paths, PIL images and uint8 arrays turned into RGB PIL images.

Every failure names the image (its position and, for a file, its path): a
missing file, a path that is not a regular file (a folder, a pipe, a device),
a file over :data:`~sksplice._io.MAX_IMAGE_BYTES`, an unreadable or truncated
one, and a decompression bomb (an image whose pixel count exceeds PIL's
``Image.MAX_IMAGE_PIXELS`` limit).  An image file's EXIF orientation is
applied (:func:`sksplice._io.open_image_file`), so a photo stored sideways with an
orientation tag is encoded upright, as viewers show it.
"""

from __future__ import annotations

import os

import numpy as np

from .._io import MAX_IMAGE_BYTES, RefusedFileError, check_regular_file, open_image_file

__all__ = ["as_image_list", "check_files_exist", "load_image"]


def as_image_list(images):
    """A list of image items from one image or a sequence of them.

    Parameters
    ----------
    images : path, PIL image, uint8 ndarray, or a sequence of those
        One image, a sequence, or a uint8 array of shape (n, H, W, 3).

    Returns
    -------
    items : list
        One entry per image (not yet loaded).
    """
    from PIL import Image

    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8 and images.ndim == 4:
            return list(images)
        if images.dtype == np.uint8 and images.ndim in (2, 3):
            return [images]
        raise ValueError(
            f"an image array must be uint8 of shape (H, W, 3) or (n, H, W, 3); got dtype "
            f"{images.dtype} and shape {images.shape}. Convert floats in [0, 1] with "
            "(x * 255).round().astype(np.uint8)."
        )
    try:
        return list(images)
    except TypeError:
        raise ValueError(
            f"images must be a list of paths, PIL images or uint8 arrays; got "
            f"{type(images).__name__}."
        ) from None


def check_files_exist(items):
    """Raise ``FileNotFoundError`` naming the first path item that is not a file.

    Parameters
    ----------
    items : list
        Image items; only the paths among them are checked.
    """
    for i, item in enumerate(items):
        if not isinstance(item, (str, os.PathLike)):
            continue
        try:
            check_regular_file(item, f"image {i}", MAX_IMAGE_BYTES)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image {i} ({os.fspath(item)!r}) does not exist or is not a file; fix "
                "the path or remove it from the inputs."
            ) from None


def load_image(item, index):
    """One RGB PIL image from a path, a PIL image or a uint8 array.

    Parameters
    ----------
    item : str, path-like, PIL.Image.Image or ndarray
        The image.
    index : int
        Its position in the inputs (named in errors).

    Returns
    -------
    image : PIL.Image.Image
        In RGB mode.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        try:
            return open_image_file(path)
        except RefusedFileError as e:
            raise ValueError(f"image {index}: {e}") from None
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image {index} ({path!r}) does not exist; fix the path or remove it."
            ) from None
        except Image.DecompressionBombError as e:
            raise ValueError(
                f"image {index} ({path!r}) is too large to decode safely ({e}); downscale the "
                "file, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it."
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, MemoryError) as e:
            raise ValueError(
                f"image {index} ({path!r}) could not be read as an image ({type(e).__name__}: "
                f"{str(e)[:200]}); the file is corrupt, truncated or not an image: replace or "
                "remove it."
            ) from None
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or not (
            item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (1, 3, 4))
        ):
            raise ValueError(
                f"image {index} is an array of dtype {item.dtype} and shape {item.shape}; "
                "pass uint8 arrays of shape (H, W, 3) (convert floats in [0, 1] with "
                "(x * 255).round().astype(np.uint8))."
            )
        if item.ndim == 3 and item.shape[2] == 1:
            item = item[:, :, 0]
        return Image.fromarray(item).convert("RGB")
    raise ValueError(
        f"image {index} is a {type(item).__name__}; pass a path, a PIL image or a uint8 "
        "array of shape (H, W, 3) (for text, use encode_texts / input='text')."
    )
