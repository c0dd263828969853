"""The ``sksplice`` command line.

Commands::

    sksplice decompose INPUT... [--text T] [--texts F]
                                          top concepts of images, embeddings files, texts
    sksplice decompose-dir DIR --out OUT  a folder of images -> sparse code shards (resumable)
    sksplice report OUT [-o FILE]         a self-contained HTML report of that folder
    sksplice estimate-mean DIR --out F    the mean image embedding of a folder (for --mean)
    sksplice build-vocabulary CAPTIONS    a concept vocabulary from a caption corpus
    sksplice list-models                  backbones with their reference means
    sksplice list-vocabularies            built-in vocabularies

Exit status: 0 on success, 2 for bad usage, 1 for any other error (reported
as one line on stderr; ``--verbose`` adds the traceback).  ``python -m
sksplice`` runs the same command.

Models: ``--model`` and ``--pretrained`` name an open_clip backbone and tag
(downloaded on first use); ``--checkpoint PATH`` loads the weights from a
local file instead (offline use).  An architecture open_clip does not ship
is described by ``--model-config FILE.json`` (an open_clip model config:
``embed_dim``, ``vision_cfg``, ``text_cfg``, optionally wrapped in
``{"model_cfg": ...}`` as in ``open_clip_config.json``); a file named
``open_clip_config.json`` beside the checkpoint is used automatically.
``--dictionary FILE.npz`` (a :meth:`ConceptDictionary.save
<sksplice.ConceptDictionary.save>` file) replaces the vocabulary; embeddings
files then need no model at all.  Every default is the library's
(``sksplice._defaults``, the registries).
"""

from ._main import main
from ._parser import build_parser

__all__ = ["build_parser", "main"]
