"""CLIP encoders: open_clip backbones by name and tag, local checkpoints, or your own model.

:func:`get_encoder` turns an encoder specification into an :class:`Encoder`,
which maps images and texts to unit-norm embeddings (numpy at the edges,
torch inside).  An open_clip encoder loads its weights lazily, on the first
image or text it encodes, so a cached concept dictionary and a reference
mean can be used without loading a model at all.

Text encoding is exact but fast: CLIP's text tower is causal and pools at
the end-of-text token, so the embedding of a short concept does not depend on
the padding after it.  Concepts are sorted by token length and each batch
runs on a context truncated to its longest sequence (the positional
embeddings and the causal mask are sliced to match).  This applies only
where it is exact (an open_clip text transformer with a causal mask and
end-of-text pooling); any other text tower is run at full length.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ._download import file_sha256, is_offline
from ._utils import resolve_device, suggest

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "Encoder",
    "get_encoder",
    "list_encoders",
]

#: The paper's default backbone: open_clip ViT-B-32 trained on LAION-2B.
DEFAULT_ENCODER = "ViT-B-32:laion2b_s34b_b79k"

#: The backbones of the SpLiCE paper (open_clip names and tags); any other
#: open_clip model and tag works too (see ``list_encoders(include_open_clip=True)``).
ENCODERS = {
    "ViT-B-32:laion2b_s34b_b79k": {
        "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "embed_dim": 512,
        "description": "open_clip ViT-B/32 trained on LAION-2B (the paper's default)",
    },
    "ViT-B-32:openai": {
        "model": "ViT-B-32", "pretrained": "openai", "embed_dim": 512,
        "description": "OpenAI CLIP ViT-B/32",
    },
    "ViT-B-16:openai": {
        "model": "ViT-B-16", "pretrained": "openai", "embed_dim": 512,
        "description": "OpenAI CLIP ViT-B/16",
    },
    "RN50:openai": {
        "model": "RN50", "pretrained": "openai", "embed_dim": 1024,
        "description": "OpenAI CLIP ResNet-50",
    },
}

_SCHEMAS = ("hf-hub:", "local-dir:")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
#: loaded open_clip models, shared by the Encoders of one process (bounded)
_LOADED: OrderedDict = OrderedDict()
_MAX_LOADED = 2
#: checkpoint digests by (path, size, mtime)
_DIGESTS: dict = {}


def list_encoders(include_open_clip=False):
    """Encoder names accepted by :func:`get_encoder`.

    Parameters
    ----------
    include_open_clip : bool, default=False
        Also list every ``"MODEL:TAG"`` pair open_clip can download.

    Returns
    -------
    names : list of str
        The paper's backbones (:data:`ENCODERS`) first.

    Examples
    --------
    >>> from sksplice import list_encoders
    >>> list_encoders()
    ['ViT-B-32:laion2b_s34b_b79k', 'ViT-B-32:openai', 'ViT-B-16:openai', 'RN50:openai']
    """
    names = list(ENCODERS)
    if include_open_clip:
        import open_clip

        names += [n for n in open_clip.list_pretrained(as_str=True) if n not in ENCODERS]
    return names


def get_encoder(encoder=DEFAULT_ENCODER, *, device="auto", cache_dir=None, offline=None,
                precision="auto"):
    """Resolve an encoder specification into an :class:`Encoder`.

    Parameters
    ----------
    encoder : str, tuple, Encoder or object, default="ViT-B-32:laion2b_s34b_b79k"
        * ``"MODEL:TAG"``: an open_clip model and pretrained tag, e.g.
          ``"ViT-B-16:openai"`` (see :func:`list_encoders`);
        * ``"MODEL"``: the model with its first registered tag (the paper's
          for its backbones, else open_clip's first);
        * ``(MODEL, TAG)``, ``(MODEL, "/path/to/checkpoint")`` (a local weights
          file, for offline use) or ``(MODEL, None)`` (random weights, for
          tests: never cached on disk);
        * ``"hf-hub:org/repo"`` or ``"local-dir:/path"``: open_clip schemas;
        * an :class:`Encoder` (returned unchanged);
        * an object with ``encode_image``/``encode_text`` and ``preprocess``/
          ``tokenizer`` attributes, or a ``(model, preprocess, tokenizer)``
          tuple (see :meth:`Encoder.from_model`).
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    cache_dir : str or path-like, default=None
        Where model weights are cached; ``None`` uses open_clip's default (the
        Hugging Face cache, ``$HF_HOME``).
    offline : bool or None, default=None
        Never download (``None``: ``SKSPLICE_OFFLINE`` / ``HF_HUB_OFFLINE``).
    precision : {"auto", "fp32", "fp16"}, default="auto"
        ``"auto"``: float16 autocast on CUDA, float32 on CPU.

    Returns
    -------
    encoder : Encoder
        Weights load lazily, on first use.

    Raises
    ------
    ValueError
        Unknown model or tag (close matches are suggested), or a malformed
        specification.
    FileNotFoundError
        A checkpoint path that does not exist.

    Examples
    --------
    >>> from sksplice import get_encoder
    >>> enc = get_encoder("ViT-B-16:openai", device="cpu")   # nothing is downloaded yet
    >>> enc.model_name, enc.pretrained, enc.embed_dim
    ('ViT-B-16', 'openai', 512)
    >>> get_encoder("ViT-B-23:openai")
    Traceback (most recent call last):
    ...
    ValueError: unknown open_clip model 'ViT-B-23'. Did you mean 'ViT-B-32', ...
    """
    if isinstance(encoder, Encoder):
        return encoder
    if isinstance(encoder, os.PathLike):
        raise ValueError(
            f"encoder={os.fspath(encoder)!r} is a path without a model name; pass "
            "(MODEL, path), e.g. ('ViT-B-32', 'weights.bin'), naming the architecture of "
            "the checkpoint."
        )
    if isinstance(encoder, str):
        model_name, pretrained = _parse_name(encoder)
    elif isinstance(encoder, tuple) and len(encoder) == 2 and isinstance(encoder[0], str):
        model_name, pretrained = encoder
        if isinstance(pretrained, os.PathLike):
            pretrained = os.fspath(pretrained)
        if pretrained is not None and not isinstance(pretrained, str):
            raise ValueError(
                f"the second item of encoder={encoder!r} must be a pretrained tag, a "
                "checkpoint path or None."
            )
    elif isinstance(encoder, tuple) and len(encoder) == 3 and _has_encode(encoder[0]):
        return Encoder.from_model(encoder[0], encoder[1], encoder[2], device=device,
                                  precision=precision)
    elif _has_encode(encoder):
        return Encoder.from_model(
            encoder, getattr(encoder, "preprocess", None), getattr(encoder, "tokenizer", None),
            device=device, precision=precision,
        )
    else:
        raise ValueError(
            f"encoder={encoder!r} is not an encoder: pass 'MODEL:TAG' (e.g. "
            f"{DEFAULT_ENCODER!r}), (MODEL, TAG or checkpoint path), an Encoder, or an object "
            "with encode_image and encode_text methods."
        )
    return Encoder(model_name, pretrained, device=device, cache_dir=cache_dir, offline=offline,
                   precision=precision)


def _has_encode(obj):
    return callable(getattr(obj, "encode_image", None)) and callable(
        getattr(obj, "encode_text", None)
    )


def _parse_name(name):
    if name.startswith(_SCHEMAS):
        return name, None
    model_name, sep, pretrained = name.partition(":")
    if not model_name:
        raise ValueError(f"encoder={name!r} has no model name; use 'MODEL:TAG'.")
    model_name = model_name.replace("/", "-")  # open_clip's spelling: ViT-B/32 -> ViT-B-32
    if not sep:
        return model_name, _default_tag(model_name)
    return model_name, pretrained or None


def _default_tag(model_name):
    for entry in ENCODERS.values():
        if entry["model"] == model_name:
            return entry["pretrained"]
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tags:
        return tags[0]
    _check_model_name(model_name)
    raise ValueError(
        f"open_clip has no pretrained weights for {model_name!r}; pass a checkpoint with "
        f"encoder=({model_name!r}, '/path/to/weights'), or ({model_name!r}, None) for "
        "random weights."
    )


def _check_model_name(model_name):
    import open_clip

    if model_name.startswith(_SCHEMAS):
        return
    if open_clip.get_model_config(model_name.replace("/", "-")) is None:
        raise ValueError(
            f"unknown open_clip model {model_name!r}.{suggest(model_name, open_clip.list_models())}"
            " See open_clip.list_models(), or sksplice.list_encoders() for the paper's backbones."
        )


def _checkpoint_digest(path):
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def _state_digest(module):
    """SHA-256 over a torch module's parameters and buffers (names, shapes, values)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(tensor.shape)}:{t.dtype}".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Encoder:
    """A CLIP backbone that maps images and texts to unit-norm embeddings.

    Build one with :func:`get_encoder` (open_clip names, tags, checkpoints) or
    :meth:`from_model` (your own model).  Weights of an open_clip encoder load
    on first use and are shared between encoders of the same process.

    Parameters
    ----------
    model_name : str
        An open_clip model name (``open_clip.list_models()``) or schema
        (``"hf-hub:org/repo"``, ``"local-dir:/path"``).
    pretrained : str or None, default=None
        A pretrained tag of that model, the path of a local checkpoint (a
        state dict saved with ``torch.save``, or a ``.safetensors`` file), or
        ``None`` for random weights.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    cache_dir : str or path-like, default=None
        Where downloaded weights are cached (open_clip's default when None).
    offline : bool or None, default=None
        Never download (``None``: ``SKSPLICE_OFFLINE`` / ``HF_HUB_OFFLINE``).
    precision : {"auto", "fp32", "fp16"}, default="auto"
        ``"auto"`` runs float16 autocast on CUDA and float32 on CPU.

    Attributes
    ----------
    model_name : str
    pretrained : str or None
        The tag, the checkpoint path, or None.
    checkpoint : pathlib.Path or None
        The local checkpoint, when ``pretrained`` is a file.
    device : torch.device
    precision : str
        ``"fp32"`` or ``"fp16"`` (resolved).
    embed_dim : int
        Embedding dimension.
    identity : str or None
        Stable cache key: model and tag, or model and checkpoint SHA-256;
        ``None`` for random weights (never cached).

    Examples
    --------
    >>> from sksplice.encoders import Encoder
    >>> enc = Encoder("RN50", "openai", device="cpu")
    >>> enc.identity, enc.embed_dim
    ('open_clip/RN50/openai', 1024)
    """

    def __init__(self, model_name, pretrained=None, *, device="auto", cache_dir=None,
                 offline=None, precision="auto"):
        _check_model_name(model_name)
        if not model_name.startswith(_SCHEMAS):
            model_name = model_name.replace("/", "-")  # open_clip's spelling: ViT-B/32 -> ViT-B-32
        self.model_name = model_name
        self.checkpoint = None
        if pretrained is not None:
            import open_clip

            if open_clip.is_pretrained_cfg(model_name, pretrained):
                pretrained = pretrained.lower().replace("-", "_")  # open_clip's tag spelling
            elif os.path.isfile(pretrained):
                self.checkpoint = Path(pretrained)
            elif _looks_like_path(pretrained):
                raise FileNotFoundError(
                    f"checkpoint {pretrained!r} for {model_name!r} does not exist; pass the "
                    "path of a weights file (torch.save(model.state_dict(), path) or "
                    ".safetensors), or a pretrained tag."
                )
            else:
                tags = open_clip.list_pretrained_tags_by_model(model_name)
                raise ValueError(
                    f"unknown pretrained tag {pretrained!r} for {model_name!r}."
                    f"{suggest(pretrained, tags)} Tags of {model_name}: {tags or 'none'}; "
                    "or pass the path of a local checkpoint."
                )
        self.pretrained = pretrained
        self.device = resolve_device(device)
        self.precision = _resolve_precision(precision, self.device)
        self.cache_dir = cache_dir
        self.offline = offline
        self._embed_dim = None
        self._identity = None
        self._parts = None  # (model, preprocess, tokenizer) once loaded
        self._user = False
        self._name = None

    # ----------------------------------------------------------- construction
    @classmethod
    def from_model(cls, model, preprocess=None, tokenizer=None, *, name=None, embed_dim=None,
                   device="auto", precision="auto"):
        """Wrap a live model: open_clip's, or any object with ``encode_image``/``encode_text``.

        Parameters
        ----------
        model : object
            Has ``encode_image(batch)`` and ``encode_text(batch)`` returning
            torch tensors or arrays of shape (n, embed_dim).
        preprocess : callable, default=None
            Maps one RGB ``PIL.Image`` to a tensor; the results are stacked
            into the batch given to ``encode_image``.  ``None``: inferred for
            open_clip models, otherwise ``encode_image`` receives the list of
            PIL images itself.
        tokenizer : callable, default=None
            Maps a list of strings to the batch given to ``encode_text``.
            ``None``: open_clip's tokenizer for open_clip models, otherwise
            ``encode_text`` receives the list of strings itself.
        name : str, default=None
            A stable name, used in the dictionary cache key (for a torch
            module the key also includes a digest of its weights).  Without
            it, a model that is not a torch module is never cached on disk.
        embed_dim : int, default=None
            Embedding dimension (inferred by encoding one text when None).
        device : str, default="auto"
            Where inputs are sent (a torch module is moved there too).
        precision : {"auto", "fp32", "fp16"}, default="auto"

        Returns
        -------
        encoder : Encoder

        Examples
        --------
        >>> import numpy as np
        >>> from sksplice import Encoder
        >>> class Letters:  # a toy "model": counts of a, b, c
        ...     def encode_image(self, images):
        ...         return np.ones((len(images), 3))
        ...     def encode_text(self, texts):
        ...         return np.array([[t.count(c) + 0.1 for c in "abc"] for t in texts])
        >>> enc = Encoder.from_model(Letters(), name="letters", device="cpu")
        >>> enc.encode_texts(["aab", "ccc"]).round(2)
        array([[0.89, 0.46, 0.04],
               [0.03, 0.03, 1.  ]], dtype=float32)
        """
        import torch

        if not _has_encode(model):
            raise ValueError(
                f"{type(model).__name__} has no encode_image/encode_text methods; wrap your "
                "model in an object that provides both."
            )
        self = cls.__new__(cls)
        self.model_name = name or type(model).__name__
        self.pretrained = None
        self.checkpoint = None
        self.device = resolve_device(device)
        self.precision = _resolve_precision(precision, self.device)
        self.cache_dir = None
        self.offline = None
        self._user = True
        self._name = name
        self._identity = None
        self._embed_dim = int(embed_dim) if embed_dim is not None else None
        if isinstance(model, torch.nn.Module):
            model = model.to(self.device).eval()
        if preprocess is None:
            preprocess = _default_preprocess(model)
        if tokenizer is None:
            tokenizer = _default_tokenizer(model)
        self._parts = (model, preprocess, tokenizer)
        return self

    # -------------------------------------------------------------- properties
    @property
    def embed_dim(self):
        if self._embed_dim is None:
            dim = None
            if not self._user and not self.model_name.startswith(_SCHEMAS):
                import open_clip

                cfg = open_clip.get_model_config(self.model_name.replace("/", "-"))
                dim = cfg.get("embed_dim") if cfg else None
            if dim is None:
                dim = self.encode_texts(["a photo"]).shape[1]
            self._embed_dim = int(dim)
        return self._embed_dim

    @property
    def identity(self):
        if self._identity is None:
            if self._user:
                model = self._parts[0]
                import torch

                if isinstance(model, torch.nn.Module):
                    self._identity = f"custom/{self._name or type(model).__qualname__}/" \
                                     f"sha256:{_state_digest(model)}"
                elif self._name is not None:
                    self._identity = f"custom/{self._name}"
            elif self.checkpoint is not None:
                self._identity = (
                    f"open_clip/{self.model_name}/sha256:{_checkpoint_digest(self.checkpoint)}"
                )
            elif self.pretrained is not None:
                self._identity = f"open_clip/{self.model_name}/{self.pretrained}"
            elif self.model_name.startswith("local-dir:"):
                return None
            elif self.model_name.startswith("hf-hub:"):
                self._identity = f"open_clip/{self.model_name}"
        return self._identity

    @property
    def model(self):
        """The underlying model (loaded on first access)."""
        return self._load()[0]

    @property
    def preprocess(self):
        """The image transform (PIL image -> tensor), or None."""
        return self._load()[1]

    @property
    def tokenizer(self):
        """The tokenizer (list of str -> token tensor), or None."""
        return self._load()[2]

    @property
    def truncates_text(self):
        """Whether texts are encoded on a context truncated to each batch's longest sequence."""
        return _causal_text_tower(self.model) is not None and self.tokenizer is not None

    def __repr__(self):
        if self._user:
            return f"Encoder.from_model({self.model_name!r}, device={str(self.device)!r})"
        spec = self.model_name if self.pretrained is None else (
            f"{self.model_name}:{self.pretrained}")
        return f"Encoder({spec!r}, device={str(self.device)!r})"

    def __deepcopy__(self, memo):
        # encoders are immutable wrappers; sklearn's clone must not copy the model
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        if not self._user:
            state["_parts"] = None  # reloaded from its name/tag/checkpoint on demand
        return state

    # ------------------------------------------------------------------ loading
    def _load(self):
        if self._parts is None:
            stamp = None
            if self.checkpoint is not None:  # a rewritten file is a new model
                st = os.stat(self.checkpoint)
                stamp = (os.path.realpath(self.checkpoint), st.st_size, st.st_mtime_ns)
            key = (self.model_name, self.pretrained, stamp, str(self.device),
                   None if self.cache_dir is None else str(self.cache_dir))
            if key in _LOADED:
                _LOADED.move_to_end(key)
            else:
                _LOADED[key] = _load_open_clip(self)
                while len(_LOADED) > _MAX_LOADED:
                    _LOADED.popitem(last=False)
            self._parts = _LOADED[key]
        return self._parts

    # ----------------------------------------------------------------- encoding
    def encode_images(self, images, *, batch_size=64, progress=False):
        """Unit-norm embeddings of images.

        Parameters
        ----------
        images : sequence of images, or one image
            Paths (str or ``pathlib.Path``), ``PIL.Image`` objects, uint8
            arrays of shape (H, W, 3) (also (H, W) and (H, W, 4)), or a uint8
            array of shape (n, H, W, 3).
        batch_size : int, default=64
            Images encoded at once.
        progress : bool, default=False
            Show a progress bar.

        Returns
        -------
        embeddings : ndarray of shape (n_images, embed_dim), dtype float32
            Unit-norm rows.

        Raises
        ------
        FileNotFoundError
            A path does not exist (checked for all paths before encoding).
        ValueError
            A file is not a readable image, or an item is not an image.
        """
        items = _as_image_list(images)
        _check_batch_size(batch_size)
        if not items:
            raise ValueError("no images to encode: pass at least one image.")
        for i, item in enumerate(items):  # fail fast, before any encoding
            if isinstance(item, (str, os.PathLike)) and not os.path.isfile(item):
                raise FileNotFoundError(
                    f"image {i} ({os.fspath(item)!r}) does not exist or is not a file; fix "
                    "the path or remove it from the inputs."
                )
        model, preprocess, _ = self._load()

        def encode(chunk, start):
            pil = [_load_image(item, start + j) for j, item in enumerate(chunk)]
            return model.encode_image(self._image_batch(pil, preprocess))

        return self._run(items, batch_size, progress, "images", encode)

    def encode_texts(self, texts, *, batch_size=256, progress=False):
        """Unit-norm embeddings of texts.

        For open_clip text towers that are causal with end-of-text pooling,
        texts are sorted by token length and each batch runs on a context
        truncated to its longest sequence: the same embeddings as at full
        length, many times faster for short concepts.

        Parameters
        ----------
        texts : sequence of str, or one str
        batch_size : int, default=256
            Texts encoded at once at the full context.  Truncated batches
            hold as many texts as fit in the same number of tokens
            (``batch_size * context_length``), so peak memory is unchanged.
        progress : bool, default=False
            Show a progress bar.

        Returns
        -------
        embeddings : ndarray of shape (n_texts, embed_dim), dtype float32
            Unit-norm rows.
        """
        if isinstance(texts, str):
            texts = [texts]
        try:
            texts = list(texts)
        except TypeError:
            raise ValueError(
                f"texts must be a list of strings; got {type(texts).__name__}."
            ) from None
        _check_batch_size(batch_size)
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise ValueError(
                f"texts must be strings; got {type(bad[0]).__name__} {bad[0]!r}. Convert "
                "them with [str(t) for t in texts]."
            )
        if not texts:
            raise ValueError("no texts to encode: pass at least one string.")
        model, _, tokenizer = self._load()
        tower = _causal_text_tower(model) if tokenizer is not None else None
        if tower is None:  # full context, in input order
            def encode(chunk, start):
                batch = tokenizer(chunk) if tokenizer is not None else chunk
                return model.encode_text(self._to_device(batch))

            return self._run(texts, batch_size, progress, "texts", encode)
        tokens = tokenizer(texts)
        need = _needed_length(tokens, tower)
        order = np.argsort(need.numpy(), kind="stable")
        sorted_tokens = tokens[order]
        sorted_need = need[order]

        def encode(chunk, start):
            stop = start + len(chunk)
            length = int(sorted_need[stop - 1])  # sorted: the batch's longest text is last
            return _truncated_encode_text(tower, sorted_tokens[start:stop, :length].to(self.device))

        spans = _token_budget_spans(sorted_need.tolist(), batch_size * tokens.shape[1])
        out = self._run(texts, batch_size, progress, "texts", encode, spans=spans)
        result = np.empty_like(out)
        result[order] = out
        return result

    # ----------------------------------------------------------------- helpers
    def _to_device(self, batch):
        import torch

        if isinstance(batch, torch.Tensor):
            return batch.to(self.device)
        if isinstance(batch, dict):
            return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                    for k, v in batch.items()}
        return batch

    def _image_batch(self, batch, preprocess):
        import torch

        if preprocess is None:
            return batch
        tensors = [preprocess(im) for im in batch]
        tensors = [t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t))
                   for t in tensors]
        return torch.stack(tensors).to(self.device)

    def _run(self, items, batch_size, progress, what, encode, spans=None):
        """``encode(chunk, start)`` over batches of ``items``; rows come back float32, unit norm.

        Batches are ``batch_size`` consecutive items, or the given ``(start, stop)`` spans.
        """
        import torch

        from ._utils import to_numpy

        if spans is None:
            spans = [(i, min(i + batch_size, len(items))) for i in range(0, len(items), batch_size)]
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc=f"encoding {what}", unit=what[:-1])
        blocks = []
        autocast = (
            torch.autocast(self.device.type, dtype=torch.float16)
            if self.precision == "fp16" and self.device.type == "cuda" else _nullcontext()
        )
        try:
            with torch.inference_mode(), autocast:
                for start, stop in spans:
                    out = encode(items[start:stop], start)
                    out = torch.as_tensor(out) if not isinstance(out, torch.Tensor) else out
                    blocks.append(to_numpy(out.float()))
                    if progress:
                        bar.update(stop - start)
        finally:
            if progress:
                bar.close()
        emb = np.concatenate(blocks).astype(np.float32, copy=False)
        if emb.ndim != 2 or emb.shape[0] != len(items):
            raise ValueError(
                f"the model returned embeddings of shape {emb.shape} for {len(items)} {what}; "
                "encode_image/encode_text must return one row per input."
            )
        if not np.all(np.isfinite(emb)):
            raise ValueError(
                f"the model returned NaN or inf embeddings for some {what}; check the model "
                "(with precision='fp16', try precision='fp32')."
            )
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError(f"the model returned a zero embedding for some {what}.")
        return emb / norms


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _token_budget_spans(lengths, budget):
    """Consecutive ``(start, stop)`` batches of ascending ``lengths``, each holding at most
    ``budget`` tokens once padded to its longest (last) member (at least one item)."""
    spans, start, n = [], 0, len(lengths)
    while start < n:
        stop = start + 1
        while stop < n and (stop + 1 - start) * lengths[stop] <= budget:
            stop += 1
        spans.append((start, stop))
        start = stop
    return spans


def _resolve_precision(precision, device):
    if precision not in ("auto", "fp32", "fp16"):
        raise ValueError(f"precision={precision!r}; use 'auto', 'fp32' or 'fp16'.")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            "precision='fp16' needs a CUDA device (autocast in float16 on CPU is slow and "
            "inexact); use precision='auto' or 'fp32' on CPU."
        )
    return precision


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
        batch_size < 1
    ):
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer.")


def _looks_like_path(s):
    return os.sep in s or "/" in s or Path(s).suffix.lower() in {
        ".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz",
    }


# ------------------------------------------------------------------ images
def _as_image_list(images):
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


def _load_image(item, index):
    """One RGB PIL image from a path, a PIL image or a uint8 array."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        try:
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image {index} ({path!r}) does not exist; fix the path or remove it."
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise ValueError(
                f"image {index} ({path!r}) could not be read as an image ({e}); the file is "
                "corrupt, truncated or not an image: replace or remove it."
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


# ------------------------------------------------------------------ open_clip
def _default_preprocess(model):
    import open_clip

    if isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):
        from open_clip.transform import PreprocessCfg, image_transform_v2

        cfg = getattr(getattr(model, "visual", model), "preprocess_cfg", None) or {}
        cfg = {k: v for k, v in cfg.items() if k in PreprocessCfg.__dataclass_fields__}
        if "size" not in cfg and hasattr(model.visual, "image_size"):
            cfg["size"] = model.visual.image_size
        return image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    return None


def _default_tokenizer(model):
    import open_clip

    if isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):
        cfg = open_clip.get_model_tokenize_cfg(model)
        if cfg.get("vocab_size", 49408) == 49408:
            return open_clip.SimpleTokenizer(context_length=cfg.get("context_length", 77))
        raise ValueError(
            "cannot infer the tokenizer of this open_clip model (its vocabulary is not CLIP's); "
            "pass tokenizer=open_clip.get_tokenizer(MODEL_NAME)."
        )
    return None


def _weights_file(enc):
    """Local file of a tagged open_clip checkpoint: cached, else downloaded (unless offline)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(enc.model_name, enc.pretrained)
    cache_dir = None if enc.cache_dir is None else str(enc.cache_dir)
    found, looked = _cached_weights(cfg, cache_dir)
    if found:
        return found, cfg
    if is_offline(enc.offline):
        raise FileNotFoundError(
            f"the weights of {enc.model_name}:{enc.pretrained} are needed but not cached (looked "
            f"in {'; '.join(looked)}) and downloads are off (SKSPLICE_OFFLINE or "
            "HF_HUB_OFFLINE is set). Provide them: run once with network access to cache "
            f"them, or copy the checkpoint file to this machine and pass "
            f"encoder=({enc.model_name!r}, '/path/to/checkpoint')."
        )
    try:
        return open_clip.download_pretrained(cfg, cache_dir=cache_dir), cfg
    except Exception as e:  # network, hub or disk failure
        from ._download import DownloadError

        raise DownloadError(
            f"could not download the weights of {enc.model_name}:{enc.pretrained} ({e}). Check "
            f"the network, or download the checkpoint elsewhere and pass "
            f"encoder=({enc.model_name!r}, '/path/to/checkpoint')."
        ) from e


def _cached_weights(cfg, cache_dir):
    """(path or None, places looked) for a pretrained config, without network access."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    looked = []
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            import huggingface_hub
            from huggingface_hub import constants as hf_constants
        except ImportError:  # pragma: no cover - open_clip depends on it
            huggingface_hub = None
        if huggingface_hub is not None:
            repo_id, filename = os.path.split(hub)
            filename = filename or HF_WEIGHTS_NAME
            names = [filename]
            if filename == HF_WEIGHTS_NAME:
                names.insert(0, HF_SAFE_WEIGHTS_NAME)
            elif filename.endswith((".bin", ".pth")):
                names.insert(0, filename[:-4] + ".safetensors")
            for name in names:
                path = huggingface_hub.try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
                if isinstance(path, str) and os.path.isfile(path):
                    return path, looked
            looked.append(
                f"the Hugging Face cache {cache_dir or hf_constants.HF_HUB_CACHE} for "
                f"{repo_id}/{filename}"
            )
    url = cfg.get("url", "")
    if url:
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"),
                            os.path.basename(url))
        if os.path.isfile(path):
            return path, looked
        looked.append(path)
    return None, looked


def _load_open_clip(enc):
    """(model, preprocess, tokenizer) for an open_clip Encoder."""
    import open_clip
    import torch

    kwargs = {}
    weights = None
    if enc.checkpoint is not None:
        weights = str(enc.checkpoint)
    elif enc.pretrained is not None:
        weights, cfg = _weights_file(enc)
        # what open_clip applies for a tag, applied to the resolved file: the
        # tag's activation (OpenAI weights use QuickGELU) and its preprocessing
        if cfg.get("quick_gelu", False):
            kwargs["force_quick_gelu"] = True
        for src, dst in (("mean", "image_mean"), ("std", "image_std"),
                         ("interpolation", "image_interpolation"),
                         ("resize_mode", "image_resize_mode")):
            if cfg.get(src) is not None:
                kwargs[dst] = cfg[src]
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            enc.model_name, pretrained=weights, device=enc.device,
            cache_dir=None if enc.cache_dir is None else str(enc.cache_dir), **kwargs,
        )
    except RuntimeError as e:
        msg = str(e)
        if weights is not None and ("state_dict" in msg or "size mismatch" in msg):
            lines = [ln.strip() for ln in msg.splitlines() if ln.strip()][1:4]
            raise ValueError(
                f"the checkpoint {weights!r} does not fit the architecture {enc.model_name!r} "
                f"({'; '.join(lines)[:400]}). Pass the model name the checkpoint was trained "
                "with, e.g. encoder=('ViT-B-16', path) for a ViT-B/16 checkpoint (OpenAI "
                "weights use the '-quickgelu' variants)."
            ) from None
        raise
    except Exception as e:
        if enc.checkpoint is not None:  # unreadable, not a state dict, wrong format...
            raise ValueError(
                f"the checkpoint {weights!r} could not be loaded into {enc.model_name!r} "
                f"({type(e).__name__}: {str(e)[:300]}); pass a weights file written by "
                "torch.save(model.state_dict(), path) (or a .safetensors file) for this "
                "architecture."
            ) from e
        raise
    model.eval()
    tokenizer = open_clip.get_tokenizer(enc.model_name)
    if not isinstance(model, torch.nn.Module):  # pragma: no cover
        raise TypeError(f"open_clip returned {type(model).__name__} for {enc.model_name!r}")
    return model, preprocess, tokenizer


# ------------------------------------------------------- truncated text encoding
class _TextTower:
    """The pieces of an open_clip causal text transformer."""

    def __init__(self, token_embedding, positional_embedding, transformer, ln_final,
                 text_projection, attn_mask, pool_type, eos_id):
        self.token_embedding = token_embedding
        self.positional_embedding = positional_embedding
        self.transformer = transformer
        self.ln_final = ln_final
        self.text_projection = text_projection
        self.attn_mask = attn_mask
        self.pool_type = pool_type
        self.eos_id = eos_id


def _causal_text_tower(model):
    """A :class:`_TextTower` when truncating the context is exact for ``model``, else None.

    Exact when the text tower is open_clip's own transformer (unmodified
    ``encode_text``/``forward``), its attention mask is causal (position i sees
    only positions <= i), it pools at the end-of-text token ("argmax" or
    "eos") and it has no appended class token or padding mask.
    """
    import torch

    try:
        from open_clip.model import CLIP, CustomTextCLIP
        from open_clip.transformer import TextTransformer
    except ImportError:  # pragma: no cover
        return None
    if isinstance(model, CLIP) and type(model).encode_text is CLIP.encode_text:
        tower = _TextTower(
            model.token_embedding, model.positional_embedding, model.transformer,
            model.ln_final, model.text_projection, model.attn_mask, model.text_pool_type,
            getattr(model, "text_eos_id", None),
        )
    elif (isinstance(model, CustomTextCLIP)
          and type(model).encode_text is CustomTextCLIP.encode_text
          and type(getattr(model, "text", None)) is TextTransformer):
        text = model.text
        if text.cls_emb is not None or text.use_pad_mask or text.output_tokens:
            return None
        tower = _TextTower(
            text.token_embedding, text.positional_embedding, text.transformer, text.ln_final,
            text.text_projection, text.attn_mask, text.pool_type, getattr(text, "eos_id", None),
        )
    else:
        return None
    if tower.pool_type not in ("argmax", "eos"):
        return None
    if tower.pool_type == "eos" and tower.eos_id is None:
        return None
    mask = tower.attn_mask
    if mask is None or mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        return None
    n = mask.shape[0]
    if n != tower.positional_embedding.shape[0]:
        return None
    causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).triu(1)
    if not (torch.equal(torch.isneginf(mask), causal) and torch.all(mask[~causal] == 0)):
        return None
    return tower


def _needed_length(tokens, tower):
    """Per text, the context length that contains its pooled (end-of-text) position."""
    import torch

    n = tokens.shape[1]
    if tower.pool_type == "argmax":
        return tokens.argmax(dim=-1) + 1
    is_eos = tokens == tower.eos_id
    pos = is_eos.int().argmax(dim=-1) + 1
    return torch.where(is_eos.any(dim=-1), pos, torch.full_like(pos, n))


def _truncated_encode_text(tower, text):
    """open_clip's ``encode_text`` on a context of ``text.shape[1]`` tokens (exact)."""
    import torch.nn as nn
    from open_clip.transformer import text_global_pool

    length = text.shape[1]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(text).to(cast_dtype)
    x = x + tower.positional_embedding[:length].to(cast_dtype)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    x = tower.ln_final(x)
    x = text_global_pool(x, text, tower.pool_type, eos_token_id=tower.eos_id)
    if tower.text_projection is not None:
        if isinstance(tower.text_projection, nn.Linear):
            x = tower.text_projection(x)
        else:
            x = x @ tower.text_projection
    return x
