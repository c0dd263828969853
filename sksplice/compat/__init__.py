"""The SpLiCE reference code's API (AI4LIFE-GROUP/SpLiCE), built on :class:`SpliceTransformer`.

Code written for the reference package (``import splice``) runs with
``import sksplice.compat as splice``::

    splicemodel = splice.load("open_clip:ViT-B-32", vocabulary="laion",
                              vocabulary_size=10000, l1_penalty=0.25)
    recon = splicemodel.encode_image(images)          # dense reconstructions
    splicemodel.return_weights = True
    weights = splicemodel.encode_image(images)        # sparse concept weights

:func:`load` accepts the reference's model names (``"clip:ViT-B/32"``,
``"clip:ViT-B/16"``, ``"clip:RN50"``, ``"open_clip:ViT-B-32"``), its
vocabularies and ``vocabulary_size=-1`` (the whole vocabulary), and keeps
its defaults (``l1_penalty=0.01``, the whole vocabulary).  The object it
returns, :class:`SPLICE`, has the reference's attributes and methods
(``encode_image``, ``encode_text``, ``decompose``, ``recompose_image``,
``recompose_text``, ``intervene_image``, ``return_weights``,
``return_cosine``) and returns torch tensors.  The decomposition itself is
:class:`~sksplice.SpliceTransformer`'s (exact, on sksplice's solvers).

The reference's helpers are here too: :func:`decompose_image`,
:func:`decompose_dataset` and :func:`decompose_classes` (the weights, the
L0 norm and the cosine of an image, or their averages over a
``torch.utils.data.DataLoader`` of images and labels), and
:func:`get_tokenizer` / :func:`get_preprocess` (open_clip's tokenizer and
evaluation transform for a reference model name, built without weights).

Differences from the reference, on purpose (see ``docs/migration.md``):

* vocabulary files are read with their blank lines skipped: ``mscoco.txt``
  has one, which the reference keeps as an empty concept, so with the whole
  vocabulary its concept indices from there on differ by one;
* the reference's ``'skl'`` and ``'admm'`` solvers both solve the same
  problem, so both map to sksplice's exact solver (``solver="auto"``; any
  name of :func:`sksplice.list_solvers` is accepted too);
* the text path works: text is centred on the vocabulary's own text mean
  unless ``text_mean`` is given (the reference's text path fails as shipped);
* ``decompose_image``, ``decompose_dataset`` and ``decompose_classes`` leave
  the model's ``return_weights`` and ``return_cosine`` as they were (the
  reference sets both to True on the model it is given).
"""
from ._functions import (
    decompose_classes,
    decompose_dataset,
    decompose_image,
    get_preprocess,
    get_tokenizer,
)
from ._model import SPLICE, available_models, get_vocabulary, load

__all__ = [
    "SPLICE",
    "available_models",
    "decompose_classes",
    "decompose_dataset",
    "decompose_image",
    "get_preprocess",
    "get_tokenizer",
    "get_vocabulary",
    "load",
]
