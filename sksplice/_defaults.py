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

#: The names of the registered solvers, in the registry's order (the registry,
#: ``sksplice.solvers.SOLVERS``, holds their classes and checks that it has
#: exactly these names).  Here so that the command line can list them without
#: importing the solvers (and scikit-learn, scipy.stats, pandas with them).
SOLVER_NAMES = ("active_set", "admm", "sklearn")

#: Relative duality gap every solver stops at.
TOL = 1e-6

#: Samples decomposed at once.
BATCH_SIZE = 1024

#: File name suffixes read as images (lower case).
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
)

#: Factor by which ``SpliceTransformer.transform`` multiplies the exact SpLiCE
#: weights, so that a downstream linear model with its default regularisation
#: sees features of order one (measured on real CLIP embeddings; see
#: docs/user_guide/sparsity.md).  ``decompose`` always returns the exact weights.
OUTPUT_SCALE = 30.0

#: Image files decoded and embedded at once by the file-based paths (shards, CLI).
IMAGE_BATCH_SIZE = 64

#: Images per shard of a decomposition folder.
SHARD_SIZE = 1024

#: Concepts shown per image (CLI) and per class (summaries, plots).
TOP_K = 10

#: The HTML report (``sksplice report``, ``build_report``): concepts in the
#: dataset's top list (half as many per class), images shown per concept, concepts
#: listed per image, thumbnail edge in pixels, thumbnails embedded at most, and the
#: largest encoded thumbnail in bytes.
REPORT_TOP_CONCEPTS = 20
REPORT_IMAGES_PER_CONCEPT = 6
REPORT_CONCEPTS_PER_IMAGE = 5
REPORT_THUMBNAIL_SIZE = 96
REPORT_MAX_THUMBNAILS = 1000
REPORT_THUMBNAIL_BYTES = 12000

#: Base URL of the documentation (the notebook repr's ``?`` links point under it).
DOCS_URL = "https://sksplice.readthedocs.io/en/stable/"

#: An estimator's API page, ``{estimator_name}`` filled in by scikit-learn's HTML repr.
API_PAGE_TEMPLATE = DOCS_URL + "api/generated/sksplice.{estimator_name}.html"
