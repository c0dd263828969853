"""CLIP encoders: open_clip backbones, local checkpoints, Hugging Face models or your own.

:func:`get_encoder` turns an encoder specification into an :class:`Encoder`,
which maps images and texts to unit-norm embeddings (numpy at the edges,
torch inside).  A named encoder loads its weights lazily, on the first image
or text it encodes, so a cached concept dictionary and a reference mean can
be used without loading a model at all.

The private modules, one topic each:

* ``_spec``: the registry as plain data (:data:`ENCODERS`, the reference
  code's aliases, Hugging Face names) and spec parsing;
* ``_encoder``: :class:`Encoder`; ``_factory``: :func:`get_encoder` and
  :func:`estimator_encoder` (an estimator's encoder, resolved once);
* ``_weights``: finding, downloading and sharing open_clip weights;
* ``_text``: exact truncated text encoding for causal text towers;
* ``_images``: reading image inputs (paths, PIL images, arrays);
* ``_hf``: the ``transformers`` adapter (CLIP, SigLIP).

Text encoding is exact but fast: CLIP's text tower is causal and pools at
the end-of-text token, so the embedding of a short concept does not depend on
the padding after it.  Concepts are sorted by token length and each batch
runs on a context truncated to its longest sequence.  This applies only
where it is exact (open_clip's causal text transformer, Hugging Face's
``CLIPModel``); any other text tower (SigLIP's, bidirectional) runs at full
length.
"""

from ._encoder import Encoder
from ._factory import estimator_encoder, get_encoder, missing_weights
from ._hf import HFAdapter
from ._spec import (
    DEFAULT_ENCODER,
    ENCODER_ALIASES,
    ENCODERS,
    HF_ENCODERS,
    canonical_name,
    describe_encoder,
    list_encoders,
    looks_like_path,
    shorten,
)

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "ENCODER_ALIASES",
    "HF_ENCODERS",
    "Encoder",
    "HFAdapter",
    "canonical_name",
    "describe_encoder",
    "estimator_encoder",
    "get_encoder",
    "list_encoders",
    "looks_like_path",
    "missing_weights",
    "shorten",
]
