"""From command-line options to library objects: the encoder, the mean, the transformer."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .. import _defaults

__all__ = ["MODEL_OPTIONS", "CLIError", "build_transformer", "encoder_from_args",
           "load_dictionary_arg", "model_options_given", "set_offline"]

#: What a model name registered from --model-config may look like: a plain file stem.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
#: Bytes a model may take per byte of its checkpoint (fp16 -> fp32, plus slack).
_SIZE_SLACK = 8
_SIZE_FLOOR = 256 * 2**20


class CLIError(Exception):
    """An error reported as one line, exit status 1."""


def set_offline(args):
    """``--offline``: never use the network (for this process and its children)."""
    if getattr(args, "offline", False):
        os.environ["SKSPLICE_OFFLINE"] = "1"
        os.environ["HF_HUB_OFFLINE"] = "1"


def _check_model_name(name, flag):
    if not _MODEL_NAME.fullmatch(name) or ".." in name:
        raise CLIError(
            f"{flag} {name!r} is not a model name: with --model-config the architecture is "
            "registered under a plain name (letters, digits, '.', '_', '-', '+'; no folder, "
            "no '..'); pass e.g. --model my-model."
        )
    return name


def _estimated_bytes(cfg):
    """A rough fp32 size of the model a config describes (transformer towers only)."""
    total = 0
    for key in ("vision_cfg", "text_cfg"):
        tower = cfg.get(key)
        if not isinstance(tower, dict):
            continue
        width, layers = tower.get("width", 0), tower.get("layers", 0)
        vocab = tower.get("vocab_size", 0) if key == "text_cfg" else 0
        if isinstance(layers, (list, tuple)):  # ResNet stages
            layers = sum(v for v in layers if isinstance(v, int))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (width, layers, vocab)):
            total += 12 * width * width * max(layers, 0) + vocab * width
    return 4 * total


def _register_model_config(path, name, checkpoint):
    """Register an open_clip model config from a JSON file under the plain name ``name``."""
    import tempfile

    from .._io import read_json

    try:
        cfg = read_json(path, "model config")
    except FileNotFoundError:
        raise CLIError(f"model config {str(path)!r} does not exist; pass the path of an "
                       "open_clip model config JSON file.") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CLIError(f"model config {str(path)!r} is not valid JSON ({exc}).") from None
    if isinstance(cfg, dict) and isinstance(cfg.get("model_cfg"), dict):
        cfg = cfg["model_cfg"]
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg")
               if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise CLIError(
            f"model config {str(path)!r} lacks {missing}; it must be an open_clip model "
            "config with embed_dim, vision_cfg and text_cfg (as open_clip's "
            "model_configs/*.json, or open_clip_config.json's model_cfg)."
        )
    size = os.path.getsize(checkpoint)
    need = _estimated_bytes(cfg)
    if need > _SIZE_SLACK * size + _SIZE_FLOOR:
        raise CLIError(
            f"model config {str(path)!r} describes a model of about {need / 2**30:.1f} GiB, "
            f"but checkpoint {str(checkpoint)!r} holds {size / 2**20:.1f} MiB: the config "
            "does not describe these weights; pass the config the checkpoint was saved with."
        )
    import open_clip

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"{_check_model_name(name, '--model')}.json"
        if target.parent != Path(tmp):  # belt and braces: the file stays in tmp
            raise CLIError(f"--model {name!r} is not a model name.")
        target.write_text(json.dumps(cfg), encoding="utf-8")
        open_clip.add_model_config(target)


def encoder_from_args(args):
    """The Encoder named by --model/--pretrained/--checkpoint/--model-config.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options.

    Returns
    -------
    encoder : Encoder
        The loaded backbone.
    """
    default_model = _defaults.ENCODER.split(":")[0]
    config = args.model_config
    if config is None and args.checkpoint is not None:
        beside = Path(args.checkpoint).parent / "open_clip_config.json"
        config = beside if beside.is_file() else None
    model = args.model
    if args.checkpoint is not None:
        from .._io import MAX_CHECKPOINT_BYTES, check_regular_file

        try:
            check_regular_file(args.checkpoint, "checkpoint", MAX_CHECKPOINT_BYTES)
        except FileNotFoundError:
            raise CLIError(f"checkpoint {args.checkpoint!r} does not exist; pass the path of "
                           "the model's weights file.") from None
    if config is not None:
        if args.checkpoint is None:
            raise CLIError("--model-config describes an architecture but not its weights; "
                           "pass them with --checkpoint PATH.")
        flag = "--model" if model else "--model-config (its file name)"
        model = model or Path(config).stem
        if model == "open_clip_config":
            model, flag = Path(args.checkpoint).stem, "--checkpoint (its file name)"
        _check_model_name(model, flag)
        _register_model_config(config, model, args.checkpoint)
    model = model or default_model
    if args.checkpoint is not None:
        spec = (model, args.checkpoint)
    elif args.pretrained is not None:
        spec = f"{model}:{args.pretrained}"
    elif model == default_model:
        spec = _defaults.ENCODER
    else:
        spec = model
    from ..encoders import get_encoder

    return get_encoder(spec, device=args.device, offline=args.offline or None)


def load_mean_file(path, dim):
    """A mean vector from a .npy or .pt file, checked against the model's dimension."""
    import numpy as np

    from .._io import MAX_ARRAY_BYTES, RefusedFileError, open_regular

    path = Path(path)
    try:
        with open_regular(path, "mean file", MAX_ARRAY_BYTES) as f:
            if path.suffix.lower() in (".pt", ".pth"):
                import torch

                mean = torch.load(f, map_location="cpu", weights_only=True)
                mean = mean.detach().cpu().numpy() if hasattr(mean, "detach") else mean
            else:
                mean = np.load(f, allow_pickle=False)
    except RefusedFileError as exc:
        raise CLIError(str(exc)) from None
    except FileNotFoundError:
        raise CLIError(f"mean file {str(path)!r} does not exist; create one with `sksplice "
                       "estimate-mean DIR --out mean.npy`, or pass --mean auto or none.") from None
    except Exception as exc:  # noqa: BLE001 - numpy and torch raise many kinds
        raise CLIError(f"mean file {str(path)!r} could not be read ({exc}); pass a .npy file "
                       "(or a .pt torch tensor) of shape (embed_dim,).") from None
    mean = np.asarray(mean, dtype=np.float64).ravel()
    if mean.shape != (dim,):
        raise CLIError(
            f"mean file {str(path)!r} has {mean.size} values but the model embeds into {dim} "
            "dimensions: it was estimated with another model; estimate one with this model "
            "(`sksplice estimate-mean`)."
        )
    if not np.all(np.isfinite(mean)):
        raise CLIError(f"mean file {str(path)!r} contains NaN or inf.")
    return mean


def _check_dim(mean, dim, what):
    if mean.shape[0] != dim:
        raise CLIError(f"{what} has {mean.shape[0]} values but the embeddings have "
                       f"{dim}; pass --mean for this model.")
    return mean


def _tag_name(identity):
    """``"MODEL:TAG"`` of a recorded encoder (``"open_clip/MODEL/TAG"`` or already so)."""
    if not isinstance(identity, str) or "sha256:" in identity:
        return None  # a checkpoint or a user model: no registered mean
    parts = identity.split("/")
    if len(parts) == 3 and parts[0] == "open_clip":
        return f"{parts[1]}:{parts[2]}"
    return identity


def image_mean_from_args(args, encoder, dictionary=None):
    """The mean array (or None) selected by --mean.

    Without an encoder (``--dictionary`` and embeddings files only), ``auto``
    is the reference mean of the model the dictionary records.
    """
    from ..means import get_reference_mean, list_means

    choice = args.mean
    offline = args.offline or None
    dim = encoder.embed_dim if encoder is not None else dictionary.n_features
    if choice.lower() == "none":
        return None
    if choice.lower() == "auto" and encoder is None:
        source = _tag_name(dictionary.metadata.get("encoder"))
        mean = get_reference_mean(source, cache_dir=args.cache_dir, offline=offline) if (
            source is not None) else None
        if mean is None:
            raise CLIError(
                f"no reference image mean is registered for the dictionary's model "
                f"({source or 'not recorded'}); pass --mean FILE (.npy/.pt, e.g. from `sksplice "
                "estimate-mean`), --mean MODEL:TAG, or --mean none to skip centring.")
        return _check_dim(mean, dim, f"the reference mean of {source}")
    if choice.lower() == "auto":
        if args.checkpoint is not None and args.pretrained is not None:
            # the checkpoint holds the weights of a known tag: its reference mean applies
            key = f"{encoder.model_name}:{args.pretrained}"
            mean = get_reference_mean(key, cache_dir=args.cache_dir, offline=offline)
        else:
            mean = get_reference_mean(encoder, cache_dir=args.cache_dir, offline=offline)
        if mean is None:
            spec = encoder.model_name + (
                f" from {args.checkpoint}" if args.checkpoint else f":{encoder.pretrained}"
            )
            raise CLIError(
                f"no reference image mean is registered for {spec}; estimate one with "
                "`sksplice estimate-mean IMAGES_DIR --out mean.npy` (same model options) and "
                "pass --mean mean.npy, or --mean none to skip centring"
                + (" (or --pretrained TAG if the checkpoint holds the weights of a known "
                   "tag)" if args.checkpoint else "") + "."
            )
        return _check_dim(mean, dim, "the reference mean")
    if choice in list_means():
        mean = get_reference_mean(choice, cache_dir=args.cache_dir, offline=offline)
        return _check_dim(mean, dim, f"the reference mean of {choice}")
    return load_mean_file(choice, dim)


#: Options a precomputed dictionary makes unused: dest -> flag.
_DICTIONARY_MAKES_UNUSED = {"vocabulary": "--vocabulary", "vocabulary_size": "--vocabulary-size",
                            "prompt_template": "--prompt-template"}
#: The options that name a model: dest -> flag.
MODEL_OPTIONS = {"model": "--model", "pretrained": "--pretrained", "checkpoint": "--checkpoint",
                 "model_config": "--model-config"}


def model_options_given(args):
    """The model flags given on the command line (``--model``, ``--checkpoint``...)."""
    return [flag for dest, flag in MODEL_OPTIONS.items() if getattr(args, dest, None) is not None]


def _listing(flags):
    return ", ".join(flags) + (" is" if len(flags) == 1 else " are")


def load_dictionary_arg(args):
    """The ``ConceptDictionary`` of ``--dictionary``, refusing the options it makes unused."""
    from ..dictionary import ConceptDictionary

    explicit = getattr(args, "explicit", set())
    unused = [flag for dest, flag in _DICTIONARY_MAKES_UNUSED.items() if dest in explicit]
    if unused:
        raise CLIError(
            f"{_listing(unused)} unused with --dictionary: the concepts and their embeddings "
            f"come from {args.dictionary!r}; drop {'it' if len(unused) == 1 else 'them'}, or "
            "drop --dictionary to build a dictionary from a vocabulary.")
    try:
        return ConceptDictionary.load(args.dictionary)
    except FileNotFoundError:
        raise CLIError(f"dictionary file {args.dictionary!r} does not exist; write one in "
                       "Python with ConceptDictionary.save(path) (e.g. of "
                       "sksplice.build_dictionary(...)).") from None


def _dictionary_and_encoder(args, progress, need_model, need_image_mean, check):
    """The concept dictionary and the encoder (None when ``--dictionary`` makes it unneeded).

    ``check(args, encoder, vocabulary=, mean=, images=)``, when given, runs
    once the (not yet loaded) encoder is known and before anything is loaded.
    """
    if args.dictionary is not None:
        dictionary = load_dictionary_arg(args)
        source = dictionary.metadata.get("encoder") or "not recorded in the file"
        given = model_options_given(args)
        if not need_model:
            if given:
                raise CLIError(
                    f"{_listing(given)} unused: with --dictionary, embeddings files need no "
                    "model; drop the model options (a model is needed only to embed images "
                    "and texts).")
            return dictionary, None
        if not given:
            raise CLIError(
                "images and texts need a model to embed them: pass the model the dictionary "
                f"was built with ({source}) with --model/--pretrained or --checkpoint; "
                "embeddings files (.npy, .pt, .safetensors) need none.")
        encoder = encoder_from_args(args)
        if check is not None:
            check(args, encoder, vocabulary=False, mean=need_image_mean, images=True)
        if encoder.embed_dim != dictionary.n_features:
            raise CLIError(
                f"the model embeds into {encoder.embed_dim} dimensions but the dictionary "
                f"{args.dictionary!r} has {dictionary.n_features} (it was built with "
                f"{source}); pass that model's options.")
        return dictionary, encoder
    from ..concepts import build_dictionary

    encoder = encoder_from_args(args)
    if check is not None:
        check(args, encoder, vocabulary=True, mean=need_image_mean, images=need_model)
    dictionary = build_dictionary(
        encoder, args.vocabulary, vocabulary_size=args.vocabulary_size,
        prompt_template=args.prompt_template, cache_dir=args.cache_dir,
        offline=args.offline or None, progress=progress,
    )
    return dictionary, encoder


def build_transformer(args, progress, *, need_image_mean=True, need_model=True, check=None):
    """Fitted SpliceTransformers from the options: ``(for images, for texts, encoder)``.

    Nothing is encoded but the vocabulary (with a progress bar on stderr when
    ``progress``): the transformers are fitted without data.  Options not
    given keep the library's defaults.  With ``--dictionary`` and
    ``need_model=False`` (embeddings files only) no model is loaded and the
    encoder is None.  ``check`` sees the encoder before anything is loaded
    (the command line lists every missing file there).
    """
    from ..shards import image_transformer

    dictionary, encoder = _dictionary_and_encoder(args, progress, need_model, need_image_mean,
                                                  check)
    params = {"solver": args.solver, "device": args.device, "tol": args.tol,
              "max_iter": args.max_iter}
    if args.l1 is not None:
        params["l1"] = args.l1
    if args.n_nonzero is not None:
        params["n_nonzero"] = args.n_nonzero
    image_est = None
    if need_image_mean:
        image_est = image_transformer(encoder, dictionary,
                                      image_mean_from_args(args, encoder, dictionary), **params)
    text_mean = None if args.mean.lower() == "none" else dictionary.text_mean
    text_est = image_transformer(encoder, dictionary, text_mean, **params)
    return image_est, text_est, encoder
