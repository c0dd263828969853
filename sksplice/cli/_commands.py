"""The commands: each takes the parsed options and returns the exit status."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from .._defaults import IMAGE_EXTENSIONS
from ._inputs import (
    is_embeddings_file,
    load_embeddings_file,
    read_texts,
    resolve_image_arg,
)
from ._parser import PROG
from ._preflight import check_files
from ._resolve import CLIError, build_transformer, encoder_from_args

__all__ = ["COMMANDS", "info", "one_line"]


def info(msg):
    """A line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def one_line(text):
    """``text`` with its whitespace runs (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


# ---------------------------------------------------------------- decompose
def _rows(codes, cosine, names):
    out = []
    for i in range(codes.shape[0]):
        row = codes.getrow(i)
        order = np.argsort(-row.data, kind="stable")
        out.append({"l0_norm": int(row.nnz), "cosine": float(cosine[i]),
                    "concepts": [{"concept": str(names[row.indices[j]]),
                                  "weight": float(row.data[j])} for j in order]})
    return out


def cmd_decompose(args):
    """``sksplice decompose``."""
    from ..shards import codes_and_cosine, decompose_image_files

    texts = read_texts(args)
    if not args.inputs and not texts:
        raise CLIError("nothing to decompose: pass image or embeddings files, --text TEXT or "
                       "--texts FILE.")
    image_args = [a for a in args.inputs if not is_embeddings_file(a)]
    image_est, text_est, encoder = build_transformer(
        args, progress=not args.no_progress, need_image_mean=bool(args.inputs),
        need_model=bool(image_args or texts), check=check_files)
    names = text_est.get_feature_names_out()
    dim = text_est.dictionary_.n_features
    skipped, image_rows, ordered = [], {}, []
    paths = [resolve_image_arg(a) for a in image_args]
    if paths:
        codes, cosine, ok, bad = decompose_image_files(
            image_est, paths, batch_size=args.batch_size, strict=args.strict)
        for i, err in bad:
            info(f"{PROG}: warning: skipped {paths[i]!r}: {one_line(err)}")
            skipped.append({"image": paths[i], "error": one_line(err)})
        image_rows = {pos: dict(image=paths[pos], kind="image", **row)
                      for pos, row in zip(ok, _rows(codes, cosine, names), strict=False)}
    n_image = 0
    for arg in args.inputs:  # rows in the order the inputs were given
        if is_embeddings_file(arg):
            X = load_embeddings_file(arg, dim)
            codes, cosine = codes_and_cosine(image_est, X)
            ordered += [dict(image=f"{arg}[{i}]", kind="embedding", **row)
                        for i, row in enumerate(_rows(codes, cosine, names))]
        else:
            if n_image in image_rows:
                ordered.append(image_rows[n_image])
            n_image += 1
    if texts:
        E = np.asarray(encoder.encode_texts(texts))
        codes, cosine = codes_and_cosine(text_est, E)
        ordered += [dict(image=texts[i], kind="text", **row)
                    for i, row in enumerate(_rows(codes, cosine, names))]
    if not ordered:
        raise CLIError(f"none of the {len(paths)} image(s) could be read; nothing to "
                       "decompose.")
    est = image_est if image_est is not None else text_est
    _print_results(args, ordered, skipped, est, _model_name(encoder, est), names)
    return 0


def _model_name(encoder, est):
    """The model the codes are in: the encoder's, or the one the dictionary records."""
    if encoder is not None:
        return str(encoder.identity or encoder.model_name)
    return str(est.dictionary_.metadata.get("encoder"))


def _print_results(args, results, skipped, est, model, names):
    k = args.top_k or None
    if args.format == "json":
        for r in results:
            r["concepts"] = r["concepts"][:k]
        print(json.dumps({
            "model": model,
            "l1": None if est.n_nonzero is not None else est.l1,
            "n_nonzero": est.n_nonzero, "n_concepts": len(names),
            "results": results, "skipped": skipped,
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


# ------------------------------------------------------------ decompose-dir
def cmd_decompose_dir(args):
    """``sksplice decompose-dir``."""
    from ..shards import decompose_to_shards, list_image_files, read_manifest

    root, out = Path(args.directory), Path(args.out)
    images, classes = list_image_files(root, exclude=[out])
    if not images:
        raise CLIError(f"no image files under {str(root)!r} (looked for "
                       f"{' '.join(IMAGE_EXTENSIONS)}).")
    est, _, _ = build_transformer(args, progress=not args.no_progress, check=check_files)
    if (out / "manifest.json").exists():
        try:
            if not read_manifest(out).get("complete"):
                info(f"{PROG}: resuming the unfinished decomposition in {str(out)!r}")
        except (ValueError, OSError):
            pass  # decompose_to_shards says what is wrong, and what to do
    labelled = any(classes)
    manifest = decompose_to_shards(
        images, out, est, labels=classes if labelled else None, root=root,
        shard_size=args.shard_size, batch_size=args.batch_size, strict=args.strict,
        overwrite=args.overwrite, summary=True, plots=not args.no_plots, top_k=args.top_k,
        progress=not args.no_progress,
    )
    for b in manifest["bad_files"]:
        info(f"{PROG}: warning: skipped {b['image']!r}: {one_line(b['error'])}")
    if manifest["n_decomposed"] == 0:
        raise CLIError(f"none of the {manifest['n_images']} image(s) under {str(root)!r} "
                       f"could be read (listed in {str(out / 'manifest.json')!r}, bad_files); "
                       "fix or replace them and rerun: they are retried.")
    n_shards = len(manifest["shards"])
    resumed = manifest.get("n_resumed_shards", 0)
    print(f"decomposed {manifest['n_decomposed']} of {manifest['n_images']} images into "
          f"{n_shards} shard(s) in {out}"
          + (f" ({resumed} shard(s) kept from an earlier run)" if resumed else ""))
    if manifest["bad_files"]:
        print(f"{len(manifest['bad_files'])} unreadable file(s) skipped, listed in "
              f"{out / 'manifest.json'} (bad_files); fix them and rerun to add them")
    from .._io import check_inside, read_json

    summary = read_json(check_inside(out, out / "summary.json"), "summary")
    for entry in summary:
        top = ", ".join(f"{t['concept']} ({t['mean_weight']:.3f})"
                        for t in entry["top_concepts"][:5])
        print(f"  {entry['class']} [{entry['n_images']} images]: {top or '(no concepts)'}")
    return 0


# ------------------------------------------------------------------- report
def cmd_report(args):
    """``sksplice report``."""
    import time

    from ..shards import load_decomposition

    start = time.perf_counter()
    decomposition = load_decomposition(args.out)
    options = {k: getattr(args, k) for k in ("top_concepts", "images_per_concept",
                                              "concepts_per_image", "thumbnail_size",
                                              "max_thumbnails")}
    if args.title is not None:
        options["title"] = args.title
    path = decomposition.to_html(args.output, **options)
    size = path.stat().st_size
    size = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    print(f"wrote {path} ({size}, {decomposition.codes.shape[0]} images, "
          f"{time.perf_counter() - start:.1f} s)")
    return 0


# ------------------------------------------------------------ estimate-mean
def cmd_estimate_mean(args):
    """``sksplice estimate-mean``."""
    from tqdm.auto import tqdm

    from .._io import atomic_write
    from ..means import estimate_mean
    from ..shards import list_image_files, read_images

    root, out = Path(args.directory), Path(args.out)
    if out.suffix.lower() not in (".npy", ".pt", ".pth"):
        raise CLIError(f"--out {str(out)!r} must end in .npy or .pt.")
    images, _ = list_image_files(root)
    if not images:
        raise CLIError(f"no image files under {str(root)!r}.")
    encoder = encoder_from_args(args)
    check_files(args, encoder, vocabulary=False, mean=False, images=True)
    total, count, n_bad = None, 0, 0
    bs = args.batch_size
    with tqdm(total=len(images), unit="img", desc="estimating mean",
              disable=args.no_progress) as bar:
        for start in range(0, len(images), bs):
            chunk = [str(root / p) for p in images[start : start + bs]]
            pil, _, bad = read_images(chunk, args.strict)
            for i, err in bad:
                info(f"{PROG}: warning: skipped {images[start + i]!r}: {one_line(err)}")
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
        atomic_write(out, lambda f: np.save(f, mean))
    else:
        import torch

        atomic_write(out, lambda f: torch.save(torch.from_numpy(mean), f))
    print(f"wrote the mean of {count} image embeddings ({mean.shape[0]} dimensions, norm "
          f"{float(np.linalg.norm(mean)):.3f}) to {out}"
          + (f"; {n_bad} unreadable file(s) skipped" if n_bad else ""))
    return 0


# --------------------------------------------------------- build-vocabulary
def cmd_build_vocabulary(args):
    """``sksplice build-vocabulary``."""
    from .._io import atomic_write
    from ..vocabularies import build_vocabulary

    def captions(f):
        for line in f:
            line = line.strip()
            if line:
                yield line

    def build(f):
        return build_vocabulary(captions(f), args.n_words, args.n_bigrams,
                                min_count=args.min_count)

    if args.captions == "-":
        concepts = build(sys.stdin)
    else:
        import io

        from .._io import open_regular

        try:  # streamed: no size cap, but a directory, a pipe or a device is refused
            with io.TextIOWrapper(open_regular(args.captions, "caption file"),
                                  encoding="utf-8-sig") as f:
                concepts = build(f)
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
        atomic_write(args.out, lambda f: f.write(text.encode("utf-8")))
        info(f"wrote {len(concepts)} concepts (least to most frequent) to {args.out}")
    return 0


# -------------------------------------------------------------------- lists
def _print_columns(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip())


def cmd_list_models(args):
    """``sksplice list-models``."""
    from ..encoders import ENCODERS, list_encoders
    from ..means import list_means

    means = set(list_means())
    rows = [("MODEL:TAG", "DIM", "MEAN", "DESCRIPTION")]
    for name in list_encoders(include_open_clip=args.all):
        entry = ENCODERS.get(name, {})
        rows.append((name, str(entry.get("embed_dim", "")), "yes" if name in means else "-",
                     entry.get("description", "")))
    _print_columns(rows)
    if not args.all:
        print("\n(--all lists every open_clip MODEL:TAG; MEAN: a reference image mean exists, "
              "otherwise use `sksplice estimate-mean`)")
    return 0


def cmd_list_vocabularies(args):
    """``sksplice list-vocabularies``."""
    from .._download import get_cache_dir
    from ..vocabularies import VOCABULARIES, list_vocabularies

    cache = get_cache_dir(args.cache_dir)
    rows = [("NAME", "DEFAULT SIZE", "CACHED", "DESCRIPTION")]
    for name in list_vocabularies():
        entry = VOCABULARIES[name]
        cached = "yes" if (cache / entry["path"]).is_file() else "no"
        rows.append((name, str(entry.get("default_size", "")), cached,
                     entry.get("description", "")))
    _print_columns(rows)
    print(f"\ncache: {cache}\n(or pass --vocabulary FILE: one concept a line, least to most "
          "frequent)")
    return 0


#: Command name -> function.
COMMANDS = {
    "decompose": cmd_decompose,
    "decompose-dir": cmd_decompose_dir,
    "report": cmd_report,
    "estimate-mean": cmd_estimate_mean,
    "build-vocabulary": cmd_build_vocabulary,
    "list-models": cmd_list_models,
    "list-vocabularies": cmd_list_vocabularies,
}
