"""The one definition of each default shared by the library and the command line.

The estimators' signatures, ``build_dictionary``, the registries and the CLI
read these names; nothing restates the values.
"""

from __future__ import annotations

#: Sparsity penalty on the SpLiCE reference implementation's scale.
L1 = 0.25

#: The CLIP backbone, as an open_clip ``"MODEL:TAG"`` string.
ENCODER = "ViT-B-32:laion2b_s34b_b79k"

#: The registered concept vocabulary.
VOCABULARY = "laion"

#: Concepts kept from a registered vocabulary when no size is given (its most
#: frequent ones); a vocabulary's registry entry may set its own.
VOCABULARY_SIZE = 10000

#: Template applied to each concept before text encoding.
PROMPT_TEMPLATE = "{}"

#: Relative duality gap every solver stops at.
TOL = 1e-6

#: Samples decomposed at once.
BATCH_SIZE = 1024

#: File name suffixes read as images (lower case).
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
)
