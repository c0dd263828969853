"""The ``sksplice`` command line.

Commands::

    sksplice decompose IMAGE...           top concepts of each image (table, --json, --csv)
    sksplice decompose-dir DIR --out OUT  a folder of images -> sparse code shards (resumable)
    sksplice estimate-mean DIR --out F    the mean image embedding of a folder (for --mean)
    sksplice build-vocabulary CAPTIONS    a concept vocabulary from a caption corpus
    sksplice list-models                  backbones with their reference means
    sksplice list-vocabularies            built-in vocabularies

Exit status: 0 on success, 2 for bad usage, 1 for any other error (reported
as one line on stderr; ``--verbose`` adds the traceback).

Models: ``--model`` and ``--pretrained`` name an open_clip backbone and tag
(downloaded on first use); ``--checkpoint PATH`` loads the weights from a
local file instead (offline use).  An architecture open_clip does not ship
is described by ``--model-config FILE.json`` (an open_clip model config:
``embed_dim``, ``vision_cfg``, ``text_cfg``, optionally wrapped in
``{"model_cfg": ...}`` as in ``open_clip_config.json``); a file named
``open_clip_config.json`` beside the checkpoint is used automatically.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import traceback
import warnings
from pathlib import Path

__all__ = ["main", "build_parser"]

PROG = "sksplice"


class CLIError(Exception):
    """An error reported as one line, exit status 1."""


# ------------------------------------------------------------------- parser
def build_parser():
    """The ``argparse`` parser of the ``sksplice`` command.

    Returns
    -------
    parser : argparse.ArgumentParser

    Examples
    --------
    >>> args = build_parser().parse_args(["decompose", "cat.jpg", "--l1", "0.3", "--json"])
    >>> args.command, args.images, args.l1, args.format
    ('decompose', ['cat.jpg'], 0.3, 'json')
    """
    from . import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")

    model = argparse.ArgumentParser(add_help=False)
    g = model.add_argument_group("model")
    g.add_argument("--model", default=None, metavar="NAME",
                   help="open_clip model name (default: ViT-B-32; see `sksplice list-models`)")
    g.add_argument("--pretrained", default=None, metavar="TAG",
                   help="open_clip pretrained tag (default: the model's SpLiCE tag, "
                        "laion2b_s34b_b79k for ViT-B-32)")
    g.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="load the weights from this local file instead of downloading them "
                        "(state dict or .safetensors)")
    g.add_argument("--model-config", default=None, metavar="JSON",
                   help="open_clip model config for an architecture open_clip does not ship "
                        "(registered under --model, default: the file's stem)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                   help="images encoded at once (default: 64)")
    g.add_argument("--offline", action="store_true",
                   help="never use the network (also SKSPLICE_OFFLINE=1)")
    g.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="where vocabularies, means and dictionaries are cached "
                        "(default: $SKSPLICE_CACHE or the user cache folder)")

    decomp = argparse.ArgumentParser(add_help=False)
    g = decomp.add_argument_group("decomposition")
    sparsity = g.add_mutually_exclusive_group()
    sparsity.add_argument("--l1", type=_nonnegative_float, default=None,
                          help="sparsity penalty, reference-implementation scale (default: 0.25)")
    sparsity.add_argument("--n-nonzero", type=_positive_int, default=None, metavar="K",
                          help="find per image the penalty giving exactly K concepts "
                               "(instead of --l1)")
    g.add_argument("--vocabulary", default="laion", metavar="NAME|FILE",
                   help="built-in vocabulary name or a text file, one concept a line, least "
                        "to most frequent (default: laion)")
    g.add_argument("--vocabulary-size", type=_positive_int, default=None, metavar="N",
                   help="keep the N most frequent concepts (default: a built-in "
                        "vocabulary's own size, e.g. 10000 for laion; all of a file)")
    g.add_argument("--prompt-template", default="{}", metavar="TEMPLATE",
                   help='template each concept is encoded with (default: "{}")')
    g.add_argument("--mean", default="auto", metavar="auto|none|MODEL:TAG|FILE",
                   help="image mean subtracted before decomposing: 'auto' (the model's "
                        "reference mean), 'none', a registered MODEL:TAG, or a .npy/.pt file "
                        "from `sksplice estimate-mean` (default: auto)")
    g.add_argument("--solver", default="auto", help="decomposition solver (default: auto)")
    g.add_argument("--tol", type=_nonnegative_float, default=1e-6,
                   help="target relative duality gap (default: 1e-6)")
    g.add_argument("--max-iter", type=_positive_int, default=None, metavar="N",
                   help="iteration budget per image (default: the solver's)")

    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common],
        description="SpLiCE: sparse, human-readable concept decompositions of CLIP image "
                    "embeddings.",
        epilog="Run `sksplice COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("decompose", parents=[common, model, decomp],
                       help="top concepts of each image",
                       description="Decompose images into their top concepts; prints the "
                                   "weights, the L0 norm and the reconstruction cosine.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files; sklearn:china.jpg and sklearn:flower.jpg name the "
                        "photos scikit-learn ships")
    p.add_argument("--top-k", type=_nonnegative_int, default=10, metavar="K",
                   help="concepts shown per image, 0 for all nonzero (default: 10)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     help="print JSON")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv",
                     help="print CSV (image, rank, concept, weight, l0_norm, cosine)")
    p.add_argument("--strict", action="store_true",
                   help="fail on an unreadable image instead of skipping it")
    p.set_defaults(format="table", func=_cmd_decompose)

    p = sub.add_parser("decompose-dir", parents=[common, model, decomp],
                       help="a folder of images -> sparse code shards",
                       description="Decompose every image under DIR (sub-folders name the "
                                   "classes) into sparse code shards in OUT, with the concept "
                                   "names, a manifest, a per-class summary and plots. An "
                                   "interrupted run resumes when rerun with the same "
                                   "arguments.")
    p.add_argument("directory", metavar="DIR", help="folder of images")
    p.add_argument("--out", "-o", required=True, metavar="OUT", help="output folder")
    p.add_argument("--shard-size", type=_positive_int, default=1024, metavar="N",
                   help="images per shard (default: 1024)")
    p.add_argument("--top-k", type=_positive_int, default=10, metavar="K",
                   help="concepts per class in the summary and plots (default: 10)")
    p.add_argument("--strict", action="store_true",
                   help="fail on an unreadable image instead of skipping it")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a decomposition in OUT made with other settings")
    p.add_argument("--no-plots", action="store_true", help="do not write per-class plots")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_decompose_dir)

    p = sub.add_parser("estimate-mean", parents=[common, model],
                       help="mean image embedding of a folder (for --mean)",
                       description="Estimate an image mean (the mean of normalised image "
                                   "embeddings) for a backbone without a reference mean. Use "
                                   "a broad, diverse image set, not the images to decompose.")
    p.add_argument("directory", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", "-o", required=True, metavar="FILE",
                   help="where to write the mean: .npy, or .pt (a torch tensor, as the "
                        "reference means)")
    p.add_argument("--strict", action="store_true",
                   help="fail on an unreadable image instead of skipping it")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_estimate_mean)

    p = sub.add_parser("build-vocabulary", parents=[common],
                       help="a concept vocabulary from captions",
                       description="Build a SpLiCE vocabulary (most frequent words and "
                                   "two-word phrases, stopwords dropped) from a caption file, "
                                   "one caption a line; written least to most frequent, one "
                                   "concept a line, for --vocabulary.")
    p.add_argument("captions", metavar="CAPTIONS.txt", help="caption file ('-' for stdin)")
    p.add_argument("--out", "-o", default=None, metavar="FILE",
                   help="output file (default: stdout)")
    p.add_argument("--n-words", type=_nonnegative_int, default=10000, metavar="N",
                   help="single words to keep (default: 10000)")
    p.add_argument("--n-bigrams", type=_nonnegative_int, default=5000, metavar="N",
                   help="two-word phrases to keep (default: 5000)")
    p.add_argument("--min-count", type=_positive_int, default=1, metavar="N",
                   help="drop terms seen fewer times (default: 1)")
    p.set_defaults(func=_cmd_build_vocabulary)

    p = sub.add_parser("list-models", parents=[common], help="known backbones",
                       description="The paper's backbones (with reference image means); "
                                   "--all adds every open_clip model and tag.")
    p.add_argument("--all", action="store_true", help="also list every open_clip MODEL:TAG")
    p.set_defaults(func=_cmd_list_models)

    p = sub.add_parser("list-vocabularies", parents=[common], help="built-in vocabularies",
                       description="Built-in vocabularies, their default sizes and whether "
                                   "they are cached.")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="cache folder to inspect (default: $SKSPLICE_CACHE or the user cache)")
    p.set_defaults(func=_cmd_list_vocabularies)
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


# ------------------------------------------------------------------- output
def _info(msg):
    print(msg, file=sys.stderr, flush=True)


def _one_line(text):
    return " ".join(str(text).split())


def _cli_wording(message):
    """Library hints phrased for the command line (e.g. ``encoder=(M, path)`` -> flags)."""
    import re

    return re.sub(r"encoder=\('([^']*)', '([^']*)'\)", r"--model \1 --checkpoint \2", message)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    _info(f"{PROG}: warning: {_one_line(message)}")


# --------------------------------------------------------- model resolution
def _set_offline(args):
    if getattr(args, "offline", False):
        os.environ["SKSPLICE_OFFLINE"] = "1"
        os.environ["HF_HUB_OFFLINE"] = "1"


def _register_model_config(path, name):
    """Register an open_clip model config from a JSON file under ``name``."""
    import tempfile

    import open_clip

    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CLIError(f"model config {str(path)!r} does not exist; pass the path of an "
                       "open_clip model config JSON file.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
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
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.json").write_text(json.dumps(cfg), encoding="utf-8")
        open_clip.add_model_config(tmp)


def _encoder(args):
    """The Encoder named by --model/--pretrained/--checkpoint/--model-config."""
    from .encoders import get_encoder

    config = args.model_config
    if config is None and args.checkpoint is not None:
        beside = Path(args.checkpoint).parent / "open_clip_config.json"
        config = beside if beside.is_file() else None
    model = args.model
    if config is not None:
        if args.checkpoint is None:
            raise CLIError("--model-config describes an architecture but not its weights; "
                           "pass them with --checkpoint PATH.")
        model = model or Path(config).stem
        if model == "open_clip_config":
            model = Path(args.checkpoint).stem
        _register_model_config(config, model)
    model = model or "ViT-B-32"
    if args.checkpoint is not None:
        if not os.path.isfile(args.checkpoint):
            raise CLIError(f"checkpoint {args.checkpoint!r} does not exist; pass the path of "
                           "the model's weights file.")
        spec = (model, args.checkpoint)
    elif args.pretrained is not None:
        spec = f"{model}:{args.pretrained}"
    else:
        spec = model
    return get_encoder(spec, device=args.device, offline=args.offline or None)


def _load_mean_file(path, dim):
    import numpy as np

    path = Path(path)
    try:
        if path.suffix.lower() in (".pt", ".pth"):
            import torch

            mean = torch.load(path, map_location="cpu", weights_only=True)
            mean = mean.detach().cpu().numpy() if hasattr(mean, "detach") else mean
        else:
            mean = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CLIError(f"mean file {str(path)!r} does not exist; create one with `sksplice "
                       "estimate-mean DIR --out mean.npy`, or pass --mean auto or none.") from None
    except Exception as exc:
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


def _image_mean(args, encoder):
    """The mean array (or None) selected by --mean."""
    from .means import get_reference_mean, list_means

    choice = args.mean
    offline = args.offline or None
    if choice.lower() == "none":
        return None
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
        return _check_dim(mean, encoder, "the reference mean")
    if choice in list_means():
        mean = get_reference_mean(choice, cache_dir=args.cache_dir, offline=offline)
        return _check_dim(mean, encoder, f"the reference mean of {choice}")
    return _load_mean_file(choice, encoder.embed_dim)


def _check_dim(mean, encoder, what):
    if mean.shape[0] != encoder.embed_dim:
        raise CLIError(f"{what} has {mean.shape[0]} values but the model embeds into "
                       f"{encoder.embed_dim}; pass --mean for this model.")
    return mean


def _transformer(args, progress):
    """A fitted SpliceTransformer (embedding input) plus its encoder, from the options."""
    from .concepts import build_dictionary
    from .shards import image_transformer

    encoder = _encoder(args)
    dictionary = build_dictionary(
        encoder, args.vocabulary, vocabulary_size=args.vocabulary_size,
        prompt_template=args.prompt_template, cache_dir=args.cache_dir,
        offline=args.offline or None, progress=progress,
    )
    mean = _image_mean(args, encoder)
    params = dict(solver=args.solver, device=args.device, tol=args.tol, max_iter=args.max_iter,
                  l1=0.25 if args.l1 is None else args.l1)
    if args.n_nonzero is not None:
        params["n_nonzero"] = args.n_nonzero
    est = image_transformer(encoder, dictionary, mean, **params)
    return est, encoder


# ----------------------------------------------------------------- commands
#: ``sklearn:NAME`` names one of the photos scikit-learn ships (no download needed).
SKLEARN_SAMPLE_PREFIX = "sklearn:"


def _resolve_image_arg(arg):
    """``sklearn:china.jpg`` / ``sklearn:flower.jpg`` -> the file scikit-learn installs."""
    if not arg.startswith(SKLEARN_SAMPLE_PREFIX):
        return arg
    import sklearn.datasets

    folder = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    name = arg[len(SKLEARN_SAMPLE_PREFIX):]
    available = sorted(f for f in os.listdir(folder) if f.lower().endswith(".jpg"))
    if name not in available:
        raise CLIError(f"{arg!r} is not a scikit-learn sample image; choose one of "
                       f"{', '.join(SKLEARN_SAMPLE_PREFIX + a for a in available)}.")
    return os.path.join(folder, name)


def _cmd_decompose(args):
    from .shards import decompose_image_files

    est, encoder = _transformer(args, progress=False)
    paths = [_resolve_image_arg(p) for p in args.images]
    codes, cosine, ok, bad = decompose_image_files(
        est, paths, encoder=encoder, batch_size=args.batch_size, strict=args.strict,
    )
    for i, err in bad:
        _info(f"{PROG}: warning: skipped {paths[i]!r}: {_one_line(err)}")
    if len(ok) == 0:
        raise CLIError(f"none of the {len(paths)} image(s) could be read; nothing to "
                       "decompose.")
    from .analysis import explain

    names = est.get_feature_names_out()
    images = [paths[i] for i in ok]
    if codes.nnz:
        explanations = explain(codes, names, top_k=len(names), cosine=cosine,
                               sample_ids=images)
    else:  # every code is zero: explain() has nothing to rank
        explanations = []
    results = [
        {"image": e.sample, "l0_norm": e.l0, "cosine": e.cosine,
         "concepts": [{"concept": c, "weight": w} for c, w in zip(e.concepts, e.weights)]}
        for e in explanations
    ] or [{"image": img, "l0_norm": 0, "cosine": float(c), "concepts": []}
          for img, c in zip(images, cosine)]
    k = args.top_k or None
    if args.format == "json":
        for r in results:
            r["concepts"] = r["concepts"][:k]
        print(json.dumps({
            "model": str(encoder.identity or encoder.model_name),
            "l1": None if est.n_nonzero is not None else est.l1,
            "n_nonzero": est.n_nonzero, "n_concepts": int(len(names)),
            "results": results,
            "skipped": [{"image": paths[i], "error": _one_line(e)} for i, e in bad],
        }, indent=2, ensure_ascii=False))
    elif args.format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", "rank", "concept", "weight", "l0_norm", "cosine"])
        for r in results:
            for rank, c in enumerate(r["concepts"][:k], 1):
                w.writerow([r["image"], rank, c["concept"], f"{c['weight']:.6g}",
                            r["l0_norm"], f"{r['cosine']:.6g}"])
        sys.stdout.write(buf.getvalue())
    else:
        print(_table(results, k))
    return 0


def _table(results, k):
    lines = []
    for n, r in enumerate(results):
        if n:
            lines.append("")
        lines.append(f"Concept decomposition of {r['image']}")
        shown = r["concepts"][:k]
        if shown:
            width = max(len("concept"), *(len(c["concept"]) for c in shown))
            lines.append(f"  {'rank':>4}  {'concept':<{width}}  {'weight':>8}")
            for rank, c in enumerate(shown, 1):
                lines.append(f"  {rank:>4}  {c['concept']:<{width}}  {c['weight']:>8.4f}")
            hidden = len(r["concepts"]) - len(shown)
            if hidden:
                lines.append(f"  ({hidden} more nonzero concept(s); --top-k 0 shows all)")
        else:
            lines.append("  (no concept: every weight is zero at this l1; lower --l1)")
        lines.append(f"  L0 norm (nonzero concepts): {r['l0_norm']}")
        lines.append(f"  cosine(CLIP, SpLiCE):       {r['cosine']:.4f}")
    return "\n".join(lines)


def _cmd_decompose_dir(args):
    from .shards import _read_manifest, decompose_to_shards, list_image_files

    root = Path(args.directory)
    images, classes = list_image_files(root)
    if not images:
        raise CLIError(f"no image files under {str(root)!r} (looked for "
                       ".jpg .jpeg .png .bmp .gif .webp .tif .tiff .ppm .pgm).")
    est, encoder = _transformer(args, progress=not args.no_progress)
    out = Path(args.out)
    if (out / "manifest.json").exists():
        try:
            old = _read_manifest(out)
            if not old.get("complete"):
                _info(f"{PROG}: resuming the unfinished decomposition in {str(out)!r}")
        except (ValueError, OSError):
            pass
    labelled = any(classes)
    manifest = decompose_to_shards(
        images, out, est, labels=classes if labelled else None, root=root,
        shard_size=args.shard_size, batch_size=args.batch_size, strict=args.strict,
        overwrite=args.overwrite, summary=True, plots=not args.no_plots, top_k=args.top_k,
        progress=not args.no_progress,
    )
    for b in manifest["bad_files"]:
        _info(f"{PROG}: warning: skipped {b['image']!r}: {_one_line(b['error'])}")
    n_shards = len(manifest["shards"])
    resumed = manifest.get("n_resumed_shards", 0)
    print(f"decomposed {manifest['n_decomposed']} of {manifest['n_images']} images into "
          f"{n_shards} shard(s) in {out}"
          + (f" ({resumed} shard(s) kept from an earlier run)" if resumed else ""))
    if manifest["bad_files"]:
        print(f"{len(manifest['bad_files'])} unreadable file(s) skipped, listed in "
              f"{out / 'manifest.json'} (bad_files)")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    for entry in summary:
        top = ", ".join(f"{t['concept']} ({t['mean_weight']:.3f})"
                        for t in entry["top_concepts"][:5])
        print(f"  {entry['class']} [{entry['n_images']} images]: {top or '(no concepts)'}")
    return 0


def _cmd_estimate_mean(args):
    import numpy as np

    from .means import estimate_mean
    from ._io import atomic_write as _atomic_write
    from .shards import _read_images, list_image_files

    root = Path(args.directory)
    images, _ = list_image_files(root)
    if not images:
        raise CLIError(f"no image files under {str(root)!r}.")
    out = Path(args.out)
    if out.suffix.lower() not in (".npy", ".pt", ".pth"):
        raise CLIError(f"--out {str(out)!r} must end in .npy or .pt.")
    encoder = _encoder(args)
    from tqdm.auto import tqdm

    total, count, n_bad = None, 0, 0
    bs = args.batch_size
    with tqdm(total=len(images), unit="img", desc="estimating mean",
              disable=args.no_progress) as bar:
        for start in range(0, len(images), bs):
            chunk = [str(root / p) for p in images[start : start + bs]]
            pil, ok, bad = _read_images(chunk, args.strict)
            for i, err in bad:
                _info(f"{PROG}: warning: skipped {images[start + i]!r}: {_one_line(err)}")
            n_bad += len(bad)
            if pil:
                part = estimate_mean(encoder, pil, batch_size=bs) * len(pil)
                total = part if total is None else total + part
                count += len(pil)
            bar.update(len(chunk))
    if count == 0:
        raise CLIError(f"none of the {len(images)} image(s) under {str(root)!r} could be read.")
    mean = total / count

    if out.suffix.lower() == ".npy":
        _atomic_write(out, lambda f: np.save(f, mean))
    else:
        import torch

        _atomic_write(out, lambda f: torch.save(torch.from_numpy(mean), f))
    print(f"wrote the mean of {count} image embeddings ({mean.shape[0]} dimensions, norm "
          f"{float(np.linalg.norm(mean)):.3f}) to {out}"
          + (f"; {n_bad} unreadable file(s) skipped" if n_bad else ""))
    return 0


def _cmd_build_vocabulary(args):
    from ._io import atomic_write as _atomic_write
    from .vocabularies import build_vocabulary

    def captions(f):
        for line in f:
            line = line.strip()
            if line:
                yield line

    if args.captions == "-":
        concepts = build_vocabulary(captions(sys.stdin), args.n_words, args.n_bigrams,
                                    min_count=args.min_count)
    else:
        try:
            with open(args.captions, encoding="utf-8") as f:
                concepts = build_vocabulary(captions(f), args.n_words, args.n_bigrams,
                                            min_count=args.min_count)
        except FileNotFoundError:
            raise CLIError(f"caption file {args.captions!r} does not exist; pass a text file "
                           "with one caption a line.") from None
        except UnicodeDecodeError as exc:
            raise CLIError(f"caption file {args.captions!r} is not UTF-8 text ({exc}).") from None
    if not concepts:
        raise CLIError("no concepts found: the captions hold no words besides stopwords and "
                       "numbers (or --min-count is too high).")
    text = "".join(c + "\n" for c in concepts)
    if args.out is None:
        sys.stdout.write(text)
    else:
        _atomic_write(args.out, lambda f: f.write(text.encode("utf-8")))
        _info(f"wrote {len(concepts)} concepts (least to most frequent) to {args.out}")
    return 0


def _cmd_list_models(args):
    from .encoders import ENCODERS, list_encoders
    from .means import list_means

    means = set(list_means())
    rows = [("MODEL:TAG", "DIM", "MEAN", "DESCRIPTION")]
    for name in list_encoders(include_open_clip=args.all):
        entry = ENCODERS.get(name, {})
        rows.append((name, str(entry.get("embed_dim", "")), "yes" if name in means else "-",
                     entry.get("description", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip())
    if not args.all:
        print("\n(--all lists every open_clip MODEL:TAG; MEAN: a reference image mean exists, "
              "otherwise use `sksplice estimate-mean`)")
    return 0


def _cmd_list_vocabularies(args):
    from ._download import get_cache_dir
    from .vocabularies import VOCABULARIES, list_vocabularies

    cache = get_cache_dir(args.cache_dir)
    rows = [("NAME", "DEFAULT SIZE", "CACHED", "DESCRIPTION")]
    for name in list_vocabularies():
        entry = VOCABULARIES[name]
        cached = "yes" if (cache / entry["path"]).is_file() else "no"
        rows.append((name, str(entry.get("default_size", "")), cached,
                     entry.get("description", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    print(f"\ncache: {cache}\n(or pass --vocabulary FILE: one concept a line, least to most "
          "frequent)")
    return 0


# --------------------------------------------------------------------- main
def main(argv=None):
    """Run the ``sksplice`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    status : int
        0 on success, 1 on errors (argparse exits with 2 on bad usage).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    _set_offline(args)
    shown = warnings.showwarning
    if not verbose:
        warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _info(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): not an error worth a message
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:  # one clear line; the trace only with --verbose
        if verbose:
            traceback.print_exc()
        message = _cli_wording(_one_line(exc)) or type(exc).__name__
        if not isinstance(exc, (CLIError, ValueError, OSError, ImportError, KeyError)):
            message = f"{type(exc).__name__}: {message}"
        _info(f"{PROG}: error: {message}")
        return 1
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
