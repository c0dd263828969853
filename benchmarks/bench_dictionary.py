"""Concept-dictionary building: exact truncated text encoding vs full context, and cache hits.

Encodes a labelled subset of the LAION vocabulary with a CLIP text tower on
the CPU two ways -- at the full 77-token context (what ``model.encode_text``
does) and with sksplice's exact truncation (concepts sorted by token length,
each batch run on its longest sequence) -- checks that both give the same
embeddings, and times loading the resulting dictionaries from the disk cache.
Weights are random (``pretrained=None``): speed does not depend on them, and
nothing is downloaded.

Run from the project root (one process, one machine)::

    python benchmarks/bench_dictionary.py                 # ViT-B-32, 300 concepts + full 10k
    python benchmarks/bench_dictionary.py --n-concepts 500 --no-full-vocab

It prints a table of concepts per second and the speed-up, and writes the
numbers to ``benchmarks/results/bench_dictionary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_VOCAB = ROOT.parent / "shared" / "data" / "splice" / "laion.txt"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    p.add_argument("--model-config", default=None,
                   help="JSON file of a custom open_clip architecture to register first")
    p.add_argument("--vocab-file", default=str(SHARED_VOCAB) if SHARED_VOCAB.is_file() else "laion",
                   help="vocabulary file, least to most frequent (default: the shared LAION "
                        "list; 'laion' for the registry download)")
    p.add_argument("--n-concepts", type=int, default=300,
                   help="concepts in the timed subset (evenly spaced over the top 10,000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3, help="timed repeats (median reported)")
    p.add_argument("--no-full-vocab", action="store_true",
                   help="skip encoding the whole top-10,000 vocabulary with truncation")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_dictionary.json"))
    return p.parse_args(argv)


def full_context(model, tokenizer, texts, batch_size):
    """What a text tower without truncation does: every batch at the full context."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            e = model.encode_text(tokenizer(texts[start : start + batch_size])).float()
            out.append(torch.nn.functional.normalize(e, dim=-1).numpy())
    return np.concatenate(out)


def timed(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def concurrent_cold_builds(enc, subset, n_workers=2):
    """Two builds of one dictionary racing on a cold cache (as GridSearchCV(n_jobs=2) workers).

    The cache's lock lets one build encode while the other waits and reads its entry.
    """
    import threading

    from sksplice import build_dictionary

    calls = []
    real = enc.encode_texts

    def counted(texts, **kwargs):
        calls.append(len(texts))
        return real(texts, **kwargs)

    enc.encode_texts = counted
    try:
        with tempfile.TemporaryDirectory() as cache:
            hits = []
            threads = [threading.Thread(target=lambda: hits.append(build_dictionary(
                enc, subset, vocabulary_size=None, cache_dir=cache).metadata["cache_hit"]))
                for _ in range(n_workers)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t
    finally:
        del enc.encode_texts
    return {"concurrent_builds": n_workers, "concurrent_encodings": len(calls),
            "concurrent_cache_hits": sum(hits), "concurrent_wall_s": wall}


def main(argv=None):
    args = parse_args(argv)
    import open_clip
    import torch

    from sksplice import Encoder, build_dictionary, load_vocabulary
    from sksplice.concepts import dictionary_cache_key

    if args.model_config:
        open_clip.add_model_config(args.model_config)
    vocab = load_vocabulary(args.vocab_file, 10000)
    step = max(1, len(vocab) // args.n_concepts)
    subset = vocab[::step][: args.n_concepts]
    label = f"LAION top-10k, every {step}th concept ({len(subset)} concepts)"

    torch.manual_seed(0)
    model = open_clip.create_model(args.model, pretrained=None).eval()
    enc = Encoder.from_model(model, name=f"bench-random-{args.model}", device="cpu")
    tokenizer = enc.tokenizer
    lengths = (tokenizer(subset).argmax(-1) + 1).tolist()
    _ = enc.identity  # hash the weights once, outside the timings
    enc.encode_texts(subset[:8])  # warm-up both paths
    full_context(model, tokenizer, subset[:8], args.batch_size)

    t_full, E_full = timed(lambda: full_context(model, tokenizer, subset, args.batch_size),
                           max(1, args.repeat - 1))
    t_trunc, E_trunc = timed(lambda: enc.encode_texts(subset, batch_size=args.batch_size),
                             args.repeat)
    max_diff = float(np.abs(E_trunc - E_full).max())

    rows = [
        ("full context (77 tokens), model.encode_text", len(subset), t_full),
        ("exact truncation (sorted, per-batch length)", len(subset), t_trunc),
    ]
    results = {"label": label, "model": args.model, "weights": "random (pretrained=None)",
               "threads": torch.get_num_threads(),
               "cpu": platform.processor() or platform.machine(),
               "token_lengths": {"min": min(lengths), "max": max(lengths),
                                 "mean": float(np.mean(lengths))},
               "full_s": t_full, "truncated_s": t_trunc, "n": len(subset),
               "speedup": t_full / t_trunc, "max_abs_diff": max_diff}

    with tempfile.TemporaryDirectory() as cache:
        miss = time.perf_counter()
        build_dictionary(enc, subset, vocabulary_size=None, cache_dir=cache)
        miss = time.perf_counter() - miss
        t_hit, cd = timed(lambda: build_dictionary(enc, subset, vocabulary_size=None,
                                                    cache_dir=cache), 5)
        assert cd.metadata["cache_hit"]
        results.update(cache_miss_s=miss, cache_hit_s=t_hit)
        if not args.no_full_vocab:
            t_vocab = time.perf_counter()
            build_dictionary(enc, vocab, vocabulary_size=None, cache_dir=cache,
                             batch_size=args.batch_size)
            t_vocab = time.perf_counter() - t_vocab
            rows.append(("exact truncation, whole LAION top-10k (+ cache write)", len(vocab),
                         t_vocab))
            t_hit10k, cd = timed(lambda: build_dictionary(enc, vocab, vocabulary_size=None,
                                                          cache_dir=cache), 5)
            assert cd.metadata["cache_hit"] and cd.n_concepts == len(vocab)
            key = dictionary_cache_key(enc.identity, vocab, "{}", enc.precision)
            size = (Path(cache) / "dictionaries" / f"{key[:40]}.npz").stat().st_size
            results.update(full_vocab_s=t_vocab, cache_hit_10k_s=t_hit10k,
                           cache_entry_10k_mb=size / 2**20)

    results.update(concurrent_cold_builds(enc, subset))
    print(f"\nConcept encoding on CPU: {args.model}, {results['weights']}, "
          f"{results['threads']} torch threads, batch {args.batch_size}")
    print(f"Subset: {label}; token lengths incl. start/end: {results['token_lengths']}")
    print()
    print(f"| {'method':<55} | {'concepts':>8} | {'time (s)':>8} | {'concepts/s':>10} | "
          f"{'ms/concept':>10} | {'speed-up':>8} |")
    print(f"|{'-' * 57}|{'-' * 10}|{'-' * 10}|{'-' * 12}|{'-' * 12}|{'-' * 10}|")
    base = t_full / len(subset)
    for name, n, t in rows:
        print(f"| {name:<55} | {n:>8} | {t:>8.2f} | {n / t:>10.1f} | {1000 * t / n:>10.2f} | "
              f"{base / (t / n):>7.1f}x |")
    print()
    print(f"max |truncated - full| over the subset: {max_diff:.2e} (float32)")
    print(f"dictionary cache: miss (encode + write) {results['cache_miss_s']:.2f} s, "
          f"hit {1000 * results['cache_hit_s']:.1f} ms ({len(subset)} concepts)")
    print(f"{results['concurrent_builds']} concurrent builds on a cold cache: vocabulary encoded "
          f"{results['concurrent_encodings']} time(s), {results['concurrent_cache_hits']} read the "
          f"other's entry, wall {results['concurrent_wall_s']:.2f} s")
    if "cache_hit_10k_s" in results:
        print(f"dictionary cache hit, 10,000 concepts: {1000 * results['cache_hit_10k_s']:.1f} ms "
              f"(entry {results['cache_entry_10k_mb']:.1f} MiB)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {os.path.relpath(out)}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
