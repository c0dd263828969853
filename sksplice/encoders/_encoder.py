"""The :class:`Encoder`: images and texts -> unit-norm embeddings."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from .._io import MAX_CHECKPOINT_BYTES, check_regular_file
from .._utils import resolve_device, suggest, to_numpy
from ._hf import HFAdapter, is_hf_model, load_hf
from ._images import as_image_list, check_files_exist, load_image
from ._spec import (
    HF_PREFIX,
    SCHEMAS,
    check_model_name,
    describe_encoder,
    looks_like_path,
    shorten,
)
from ._text import (
    causal_text_tower,
    needed_length,
    token_budget_spans,
    truncated_encode_text,
)
from ._weights import (
    checkpoint_digest,
    default_preprocess,
    default_tokenizer,
    load_open_clip,
    shared_model,
    state_digest,
)

__all__ = ["Encoder", "has_encode", "short"]


def short(obj):
    """A short description of any object for error messages (never a long repr)."""
    return describe_encoder(obj)


def has_encode(obj):
    return callable(getattr(obj, "encode_image", None)) and callable(
        getattr(obj, "encode_text", None)
    )


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


class Encoder:
    """A CLIP backbone that maps images and texts to unit-norm embeddings.

    Build one with :func:`get_encoder` (open_clip names, tags, checkpoints,
    ``"hf:"`` names) or :meth:`from_model` (your own model).  Weights of a
    named encoder load on first use and are shared between encoders of the
    same process.

    Parameters
    ----------
    model_name : str
        An open_clip model name (``open_clip.list_models()``), schema
        (``"hf-hub:org/repo"``, ``"local-dir:/path"``), or a Hugging Face
        model as ``"hf:org/repo"`` / ``"hf:/path/to/folder"``.
    pretrained : str or None, default=None
        A pretrained tag of that model, the path of a local checkpoint (a
        state dict saved with ``torch.save``, or a ``.safetensors`` file), or
        ``None`` for random weights (ignored for ``"hf:"`` names).
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
        The model's name.
    pretrained : str or None
        The tag, the checkpoint path, or None.
    checkpoint : pathlib.Path or None
        The local checkpoint, when ``pretrained`` is a file.
    device : torch.device
        Where the model runs.
    precision : str
        ``"fp32"`` or ``"fp16"`` (resolved).

    Examples
    --------
    >>> from sksplice.encoders import Encoder
    >>> enc = Encoder("RN50", "openai", device="cpu")
    >>> enc.identity, enc.embed_dim
    ('open_clip/RN50/openai', 1024)
    """

    def __init__(self, model_name, pretrained=None, *, device="auto", cache_dir=None,
                 offline=None, precision="auto"):
        self._hf = model_name.startswith(HF_PREFIX)
        if self._hf:
            pretrained = None
        else:
            check_model_name(model_name)
            if not model_name.startswith(SCHEMAS):
                model_name = model_name.replace("/", "-")  # open_clip's spelling
        self.model_name = model_name
        self.checkpoint = None
        if pretrained is not None:
            import open_clip

            if open_clip.is_pretrained_cfg(model_name, pretrained):
                pretrained = pretrained.lower().replace("-", "_")  # open_clip's tag spelling
            elif os.path.lexists(pretrained):  # a pipe, a device or a folder is refused
                check_regular_file(pretrained, "checkpoint", MAX_CHECKPOINT_BYTES)
                self.checkpoint = Path(pretrained)
            elif looks_like_path(pretrained):
                raise FileNotFoundError(
                    f"checkpoint {shorten(pretrained, 300)} for {model_name!r} does not exist; "
                    "pass the "
                    "path of a weights file (torch.save(model.state_dict(), path) or "
                    ".safetensors), or a pretrained tag."
                )
            else:
                tags = open_clip.list_pretrained_tags_by_model(model_name)
                raise ValueError(
                    f"unknown pretrained tag {shorten(pretrained)} for {model_name!r}."
                    f"{suggest(pretrained[:200], tags)} Tags of {model_name}: {tags or 'none'}; "
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
        """Wrap a live model: open_clip's, a ``transformers`` CLIP/SigLIP, or any encoder object.

        Parameters
        ----------
        model : object
            An open_clip model; a ``transformers`` model with
            ``get_image_features``/``get_text_features`` (``CLIPModel``,
            ``SiglipModel``); or any object whose ``encode_image(batch)`` and
            ``encode_text(batch)`` return torch tensors or arrays of shape
            (n, embed_dim).
        preprocess : callable or transformers processor, default=None
            Maps one RGB ``PIL.Image`` to a tensor; the results are stacked
            into the batch given to ``encode_image``.  For a ``transformers``
            model, its processor (``None``: loaded from the local HF cache by
            the model's ``name_or_path``).  ``None`` otherwise: inferred for
            open_clip models, else ``encode_image`` receives the PIL images.
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
            ``"auto"`` runs float16 autocast on CUDA and float32 on CPU.

        Returns
        -------
        encoder : Encoder
            The wrapped model.

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

        hf = is_hf_model(model)
        if not hf and not has_encode(model):
            raise ValueError(
                f"{type(model).__name__} has no encode_image/encode_text methods (nor a "
                "transformers model's get_image_features/get_text_features); wrap your model "
                "in an object that provides both."
            )
        self = cls.__new__(cls)
        self.model_name = name or type(model).__name__
        self.pretrained = None
        self.checkpoint = None
        self.device = resolve_device(device)
        self.precision = _resolve_precision(precision, self.device)
        self.cache_dir = None
        self.offline = None
        self._hf = False
        self._user = True
        self._name = name
        self._identity = None
        self._embed_dim = int(embed_dim) if embed_dim is not None else None
        if hf:
            model = HFAdapter(model.to(self.device).eval(), preprocess)
            preprocess, tokenizer = model.preprocess, None
        elif isinstance(model, torch.nn.Module):
            model = model.to(self.device).eval()
        if preprocess is None:
            preprocess = default_preprocess(model)
        if tokenizer is None and not hf:
            tokenizer = default_tokenizer(model)
        self._parts = (model, preprocess, tokenizer)
        return self

    # -------------------------------------------------------------- properties
    @property
    def embed_dim(self):
        """Embedding dimension (int)."""
        if self._embed_dim is None:
            dim = None
            if not self._user and not self._hf and not self.model_name.startswith(SCHEMAS):
                import open_clip

                cfg = open_clip.get_model_config(self.model_name.replace("/", "-"))
                dim = cfg.get("embed_dim") if cfg else None
            if dim is None:
                dim = self.encode_texts(["a photo"]).shape[1]
            self._embed_dim = int(dim)
        return self._embed_dim

    @property
    def identity(self):
        """Stable cache key (str), or None when the weights have none (never cached)."""
        if self._identity is None:
            if self._user or self._hf:
                import torch

                model = self._load()[0]
                module = model.model if isinstance(model, HFAdapter) else model
                prefix = "hf" if isinstance(model, HFAdapter) else "custom"
                label = self._name or (self.model_name[len(HF_PREFIX):] if self._hf
                                       else type(module).__qualname__)
                if isinstance(module, torch.nn.Module):
                    self._identity = f"{prefix}/{label}/sha256:{state_digest(module)}"
                elif self._name is not None:
                    self._identity = f"custom/{self._name}"
            elif self.checkpoint is not None:
                self._identity = (
                    f"open_clip/{self.model_name}/sha256:{checkpoint_digest(self.checkpoint)}"
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
        model, _, tokenizer = self._load()
        if isinstance(model, HFAdapter):
            return model.causal_text
        return causal_text_tower(model) is not None and tokenizer is not None

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
            if self._hf:
                def load():
                    adapter = load_hf(self.model_name[len(HF_PREFIX):], cache_dir=self.cache_dir,
                                      offline=self.offline, device=self.device)
                    return adapter, adapter.preprocess, None
            else:
                def load():
                    return load_open_clip(self)
            self._parts = shared_model(key, load)
        return self._parts

    # ----------------------------------------------------------------- encoding
    def encode_images(self, images, *, batch_size=64, progress=False, return_tensor=False):
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
        return_tensor : bool, default=False
            Return a float32 torch tensor on the encoder's device (no copy to
            the host) instead of a numpy array.

        Returns
        -------
        embeddings : ndarray or Tensor of shape (n_images, embed_dim), dtype float32
            Unit-norm rows.

        Raises
        ------
        FileNotFoundError
            A path does not exist (checked for all paths before encoding).
        ValueError
            A file is not a readable image (or too large to decode safely), or
            an item is not an image.
        """
        items = as_image_list(images)
        _check_batch_size(batch_size)
        if not items:
            raise ValueError("no images to encode: pass at least one image.")
        check_files_exist(items)  # fail fast, before any encoding
        model, preprocess, _ = self._load()

        def encode(chunk, start):
            pil = [load_image(item, start + j) for j, item in enumerate(chunk)]
            return model.encode_image(self._image_batch(pil, preprocess))

        return self._run(items, batch_size, progress, "images", encode, tensor=return_tensor)

    def encode_texts(self, texts, *, batch_size=256, progress=False, return_tensor=False):
        """Unit-norm embeddings of texts.

        Where it is exact (open_clip and Hugging Face CLIP text towers: causal,
        pooled at the end-of-text token), texts are sorted by token length and
        each batch runs on a context truncated to its longest sequence: the same
        embeddings as at full length, many times faster for short concepts.
        Other towers (e.g. SigLIP's) run at full length.

        Parameters
        ----------
        texts : sequence of str, or one str
            The texts.
        batch_size : int, default=256
            Texts encoded at once at the full context.  Truncated batches
            hold as many texts as fit in the same number of tokens
            (``batch_size * context_length``), so peak memory is unchanged.
        progress : bool, default=False
            Show a progress bar.
        return_tensor : bool, default=False
            Return a float32 torch tensor on the encoder's device (no copy to
            the host) instead of a numpy array.

        Returns
        -------
        embeddings : ndarray or Tensor of shape (n_texts, embed_dim), dtype float32
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
                f"texts must be strings; got {type(bad[0]).__name__} {short(bad[0])}. Convert "
                "them with [str(t) for t in texts]."
            )
        if not texts:
            raise ValueError("no texts to encode: pass at least one string.")
        model, _, tokenizer = self._load()
        if isinstance(model, HFAdapter) and model.causal_text:
            lengths = np.asarray(model.text_lengths(texts))
            order = np.argsort(lengths, kind="stable")
            spans = token_budget_spans(lengths[order].tolist(), batch_size * model.max_length)
            sorted_texts = [texts[i] for i in order]

            def encode(chunk, start):
                return model.encode_text(chunk)

            out = self._run(sorted_texts, batch_size, progress, "texts", encode, spans=spans,
                            tensor=return_tensor)
            return _unsort(out, order)
        tower = causal_text_tower(model) if tokenizer is not None else None
        if tower is None:  # full context, in input order
            def encode(chunk, start):
                batch = tokenizer(chunk) if tokenizer is not None else chunk
                return model.encode_text(self._to_device(batch))

            return self._run(texts, batch_size, progress, "texts", encode,
                             tensor=return_tensor)
        tokens = tokenizer(texts)
        need = needed_length(tokens, tower)
        order = np.argsort(need.numpy(), kind="stable")
        sorted_tokens = tokens[order]
        sorted_need = need[order]

        def encode(chunk, start):
            stop = start + len(chunk)
            length = int(sorted_need[stop - 1])  # sorted: the batch's longest text is last
            return truncated_encode_text(tower, sorted_tokens[start:stop, :length].to(self.device))

        spans = token_budget_spans(sorted_need.tolist(), batch_size * tokens.shape[1])
        out = self._run(texts, batch_size, progress, "texts", encode, spans=spans,
                        tensor=return_tensor)
        return _unsort(out, order)

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

    def _run(self, items, batch_size, progress, what, encode, spans=None, tensor=False):
        """``encode(chunk, start)`` over batches of ``items``; rows come back float32, unit norm.

        ``tensor=True`` keeps the result a torch tensor on the encoder's device.
        """
        import torch

        if spans is None:
            spans = [(i, min(i + batch_size, len(items))) for i in range(0, len(items), batch_size)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc=f"encoding {what}", unit=what[:-1])
        blocks = []
        autocast = (
            torch.autocast(self.device.type, dtype=torch.float16)
            if self.precision == "fp16" and self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        try:
            with torch.inference_mode(), autocast:
                for start, stop in spans:
                    out = encode(items[start:stop], start)
                    out = torch.as_tensor(out) if not isinstance(out, torch.Tensor) else out
                    blocks.append(out.float() if tensor else to_numpy(out.float()))
                    if bar is not None:
                        bar.update(stop - start)
        finally:
            if bar is not None:
                bar.close()
        if tensor:
            return _checked(torch.cat(blocks), len(items), what, torch)
        return _checked(np.concatenate(blocks).astype(np.float32, copy=False), len(items), what,
                        np)


def _checked(emb, n, what, xp):
    """Unit-norm float32 rows of ``emb`` (numpy or torch), or a ValueError naming the fault."""
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(
            f"the model returned embeddings of shape {tuple(emb.shape)} for {n} {what}; "
            "encode_image/encode_text must return one row per input."
        )
    if not bool(xp.isfinite(emb).all()):
        raise ValueError(
            f"the model returned NaN or inf embeddings for some {what}; check the model "
            "(with precision='fp16', try precision='fp32')."
        )
    norms = xp.linalg.norm(emb, axis=1, keepdims=True) if xp is np else emb.norm(
        dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError(f"the model returned a zero embedding for some {what}.")
    return emb / norms


def _unsort(out, order):
    """Rows of ``out`` (in ``order``) put back in input order (numpy or torch)."""
    if isinstance(out, np.ndarray):
        result = np.empty_like(out)
        result[order] = out
        return result
    import torch

    result = torch.empty_like(out)
    result[torch.as_tensor(order, device=out.device)] = out
    return result
