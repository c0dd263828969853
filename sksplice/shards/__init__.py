"""Decompose image collections into sparse code shards on disk, resumably.

This is the code path behind ``sksplice decompose-dir`` and behind
:func:`sksplice.decompose_to_shards` on a Dask cluster.  A decomposition
folder ``OUT`` holds::

    OUT/manifest.json        what was decomposed, with which settings, where
    OUT/concepts.json        the concept names, one per code column
    OUT/shards/shard-000000.npz, shard-000001.npz, ...
    OUT/summary.json         per-class concept summary (and summary.csv)
    OUT/plots/<class>.png    top concepts of each class

Each shard is a compressed ``.npz`` readable with
:func:`scipy.sparse.load_npz` (a CSR matrix of shape (n_rows, n_concepts) of
the exact SpLiCE weights) that also records which images its rows are
(``images``), their labels (``labels``), the reconstruction cosine of each
row (``cosine``), the image files of the shard that could not be read
(``bad_images``, ``bad_errors``) and a digest of the settings that made it.
Every file is written atomically (a temporary file in the same folder, then
:func:`os.replace`), so an interrupted run never leaves a corrupt file; a
rerun with the same settings keeps every finished shard and computes only
the missing ones.  :func:`load_decomposition` reads a folder back.  What is
guaranteed, and tested by fault injection, is in ``docs/reliability.md``.
"""

from .._defaults import IMAGE_EXTENSIONS
from ..exceptions import BadImageError, FolderInUseError
from ._decompose import codes_and_cosine, decompose_image_files, image_transformer
from ._files import list_image_files, read_images
from ._format import (
    Decomposition,
    load_decomposition,
    read_manifest,
    read_shard,
    write_shard,
)
from ._run import decompose_to_shards
from ._summary import write_summary

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "Decomposition",
    "FolderInUseError",
    "codes_and_cosine",
    "decompose_image_files",
    "decompose_to_shards",
    "image_transformer",
    "list_image_files",
    "load_decomposition",
    "read_images",
    "read_manifest",
    "read_shard",
    "write_shard",
    "write_summary",
]
