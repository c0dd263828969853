"""sksplice: sparse, human-readable concept codes for CLIP embeddings (SpLiCE).

The public names below are imported lazily, so ``import sksplice`` stays
fast and does not load torch or open_clip until they are needed.
"""

from importlib import import_module

from ._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "ConceptDictionary": "dictionary",
    "estimate_mean": "means",
    "list_means": "means",
    "get_reference_mean": "means",
    "build_dictionary": "concepts",
    "build_vocabulary": "vocabularies",
    "list_vocabularies": "vocabularies",
    "load_vocabulary": "vocabularies",
    "list_encoders": "encoders",
    "get_encoder": "encoders",
    "Encoder": "encoders",
    "CLIPEmbedder": "embedder",
    "SpliceTransformer": "transformer",
    "splice_encode": "transformer",
    "ConceptEditor": "editing",
    "ZeroShotClassifier": "zero_shot",
    "list_solvers": "solvers",
    "get_solver": "solvers",
    "solve_n_nonzero": "solvers",
    "decompose_to_shards": "shards",
    "load_decomposition": "shards",
    "ParallelPostFit": "_parallel",
    "center_embeddings": "core",
    "recompose": "core",
    "reconstruction_cosine": "core",
    "CenteringWarning": "exceptions",
    "DegenerateInputWarning": "exceptions",
    "DownloadError": "exceptions",
    "ModelMismatchWarning": "exceptions",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sksplice' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
