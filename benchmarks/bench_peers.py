"""The solver against its strongest CPU peers, interleaved in one process: one table, one plot.

Usage::

    python benchmarks/bench_peers.py                      # every problem, batch, l1
    python benchmarks/bench_peers.py --problems lvis --l1 0.25 --reps 3
    python benchmarks/bench_peers.py --plot-only          # the gap-vs-time plot

For each problem (real LVIS 1,203 concepts <- 1,000 ImageNet rows; real
micrographs over the 2,281 real concepts; synthetic 10,000 and 37,445), each
thread setting (1 thread, and the default: torch's and SPAMS's own), each
``l1`` and each batch size (1, 64, 1,024), the methods run interleaved --
every repetition runs each method once, in rotating order -- and the best
time of each is kept (others' jobs on a shared machine only add time).
Batch 1 is a loop of single-sample calls.

Methods: ``sksplice`` (``get_solver("auto").solve(..., sparse_output=True)``),
``spams`` (``spams.lasso(pos=True, mode=2, lambda1=l1/2)``, Gram precomputed
outside the timing, its fastest mode; skipped above 20,000 concepts, where
the Gram takes 11.2 GB), ``matmul`` (one float32 ``Z @ C.T``, the floor) and,
at batch 1, ``transform`` (``SpliceTransformer.transform``, the user-facing
latency, which the batch-1 ratio to SPAMS uses).  Every code is checked: relative duality gap and
relative objective difference to SPAMS, in float64.  The load average is
printed with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PROBLEMS = ("lvis", "micrographs", "synthetic10k", "synthetic37k")
L1S = (0.03, 0.05, 0.1, 0.25, 0.5)
BATCHES = (1, 64, 1024)
SPAMS_MAX_CONCEPTS = 20000
N_SINGLE = 8  # single-sample calls timed per repetition at batch 1


def load(problem):
    """``(C, Z)`` of a named problem (Z: up to 1,024 centred unit rows)."""
    from _problems import (
        clip_like_dictionary,
        image_like_inputs,
        lvis_problem,
        micrograph_problem,
    )

    if problem == "lvis":
        return lvis_problem()
    if problem == "micrographs":
        return micrograph_problem()
    k = {"synthetic10k": 10000, "synthetic37k": 37445}[problem]
    C = clip_like_dictionary(k).embeddings
    return C, image_like_inputs(C, 1024)


def _threads_scope(threads):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def interleaved(methods, Z, batch, reps, max_seconds=30.0):
    """Best seconds per sample of each method, runs interleaved; and each one's output."""
    rows = Z[:N_SINGLE] if batch == 1 else Z[:batch]
    best = {m: float("inf") for m in methods}
    spent = {m: 0.0 for m in methods}
    out = {}
    names = list(methods)
    for rep in range(reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for m in order:
            if spent[m] > max_seconds:
                continue  # a slow method is timed fewer times (timeit's rule)
            fn = methods[m]
            t0 = time.perf_counter()
            if batch == 1:
                res = [fn(rows[i : i + 1]) for i in range(len(rows))]
            else:
                res = fn(rows)
            dt = time.perf_counter() - t0
            spent[m] += dt
            best[m] = min(best[m], dt / len(rows))
            out[m] = res
    return best, out, rows


def _dense(codes):
    import scipy.sparse as sp

    if isinstance(codes, list):
        return np.vstack([_dense(c) for c in codes])
    if sp.issparse(codes):
        return codes.toarray()
    return np.asarray(codes, dtype=np.float64)


def run_cell(C, Z, l1, batch, threads, reps, with_transform):
    """One row of the table: every method at one (problem, threads, l1, batch)."""
    import _methods as M
    import numba
    import torch

    from sksplice.solvers import objective_and_gap

    torch_threads = 1 if threads == 1 else DEFAULT_TORCH_THREADS
    torch.set_num_threads(torch_threads)
    # the CPU kernel's samples run on numba's threads: 1, or numba's default
    numba.set_num_threads(1 if threads == 1 else numba.config.NUMBA_NUM_THREADS)
    methods = {"sksplice": M.sksplice_solve(C, l1)}
    if 5000 < C.shape[0] <= 12000:
        # what a 1 GB Gram budget buys (the default 256 MB keeps 10k Gram-free)
        methods["sksplice_gram1g"] = M.sksplice_solve(C, l1, gram_budget_mb=1024)
    if C.shape[0] <= SPAMS_MAX_CONCEPTS:
        sp_fn = M.spams_lasso(C, l1, threads=1 if threads == 1 else -1)
        if sp_fn is not None:
            methods["spams"] = sp_fn
    methods["matmul"] = M.matmul_floor(C)
    if with_transform:
        tr = M.transform_latency(C, l1)
        if tr is not None:
            methods["transform"] = tr
    with _threads_scope(None if threads != 1 else 1):
        best, out, rows = interleaved(methods, Z, batch, reps)
    row = {"k": C.shape[0], "l1": l1, "batch": batch, "threads": threads,
           "ms": {m: 1e3 * t for m, t in best.items()}, "load": os.getloadavg()[0]}
    Zr = rows.astype(np.float64)
    obj = {}
    for m in ("sksplice", "spams"):
        if m in out:
            o, g = objective_and_gap(C, Zr, _dense(out[m]), l1)
            obj[m] = o
            row[f"gap_{m}"] = float(np.max(g))
    if "spams" in obj:
        row["obj_diff"] = float(np.max(np.abs(obj["sksplice"] - obj["spams"]) / obj["spams"]))
    row["nnz_median"] = float(np.median((_dense(out["sksplice"]) > 0).sum(axis=1)))
    return row


DEFAULT_TORCH_THREADS = None


def fmt_row(problem, r):
    ms = r["ms"]
    # batch 1 is timed through the estimator (SpliceTransformer.transform)
    ours = ms["transform"] if "transform" in ms else ms["sksplice"]
    ratio = f"{ms['spams'] / ours:6.2f}x" if "spams" in ms else f"{'-':>7}"
    sp_ms = f"{ms['spams']:9.3f}" if "spams" in ms else f"{'-':>9}"
    tr = f"{ms['transform']:8.3f}" if "transform" in ms else f"{'':>8}"
    g1 = (f"  [Gram 1 GB: {ms['sksplice_gram1g']:.3f} ms, "
          f"{ms.get('spams', float('nan')) / ms['sksplice_gram1g']:.2f}x spams]"
          if "sksplice_gram1g" in ms else "")
    return (f"{problem:<13} {r['k']:>6} {r['threads']:>7} {r['l1']:>5} {r['batch']:>5} "
            f"{ours:9.3f} {sp_ms} {ratio} {ms['matmul']:8.4f} {ours / ms['matmul']:7.1f}x "
            f"{tr} {r['nnz_median']:5.0f} {r.get('gap_sksplice', float('nan')):8.1e} "
            f"{r.get('obj_diff', float('nan')):8.1e} {r['load']:5.1f}{g1}")


HEADER = (f"{'problem':<13} {'k':>6} {'threads':>7} {'l1':>5} {'batch':>5} {'ours ms':>9} "
          f"{'spams ms':>9} {'vs spams':>7} {'matmul':>8} {'x floor':>8} {'transf.':>8} "
          f"{'nnz':>5} {'rel.gap':>8} {'obj.diff':>8} {'load':>5}")


def gap_vs_time(C, Z, l1, out_png, n=64):
    """Relative duality gap against time per sample, 1 thread, for each method's effort knob."""
    import _methods as M
    import matplotlib
    import torch

    from sksplice.solvers import get_solver, objective_and_gap

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    Zb = Z[:n]
    curves = {}

    def point(fn):
        best, out, _ = interleaved({"m": fn}, Zb, n, 2)
        _, g = objective_and_gap(C, Zb, _dense(out["m"]), l1)
        return 1e3 * best["m"], float(np.mean(g))

    pts = []
    for rounds in (1, 2, 3, 100):
        solver = get_solver("auto", device="cpu", max_iter=rounds)
        solver.solve(C, Zb[:2], l1)
        pts.append(point(lambda Z_, s=solver: s.solve(C, Z_, l1, sparse_output=True).codes))
    curves["sksplice (rounds 1, 2, 3, all)"] = pts
    with _threads_scope(1):
        sp_fn = M.spams_lasso(C, l1, threads=1)
        if sp_fn is not None:
            curves["spams (exact LARS)"] = [point(sp_fn)]
        for name, make in (("skglm", M.skglm_loop), ("celer", M.celer_loop)):
            if make(C, l1) is None:
                continue
            curves[f"{name} loop (tol 1e-2..1e-10)"] = [
                point(make(C, l1, tol=t)) for t in (1e-2, 1e-4, 1e-6, 1e-8, 1e-10)]
    floor = 1e3 * interleaved({"m": M.matmul_floor(C)}, Zb, n, 3)[0]["m"]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for label, pts in curves.items():
        xs, ys = zip(*pts, strict=False)
        ax.plot(xs, [max(y, 1e-17) for y in ys], "o-", label=label)
    ax.axvline(floor, color="k", lw=0.8, ls=":", label="one float32 Z @ C.T")
    ax.axhline(1e-6, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time per sample (ms), 1 thread")
    ax.set_ylabel("mean relative duality gap")
    ax.set_title(f"LVIS 1,203 concepts, {n} ImageNet rows, l1={l1} (CPU)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return {k: v for k, v in curves.items()}, floor


def machine():
    """CPU model, core count, library versions and the load average."""
    import platform
    import subprocess

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "torch_threads_default": torch.get_num_threads(), "cpus": os.cpu_count()}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True,
                                   check=False).stdout.splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = val.strip()
    except OSError:  # pragma: no cover
        pass
    for mod in ("spams", "skglm", "celer"):
        try:
            __import__(mod)
            info[mod] = "installed"
        except ImportError:
            info[mod] = "absent (skipped)"
    info["load_avg"] = os.getloadavg()
    return info


def main(argv=None):
    global DEFAULT_TORCH_THREADS
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--l1", default=",".join(map(str, L1S)))
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--threads", default="1,default", help="1 and/or default")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    DEFAULT_TORCH_THREADS = torch.get_num_threads()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    print("machine:", json.dumps(info), flush=True)
    results = []
    if not args.plot_only:
        print(HEADER)
        for problem in args.problems.split(","):
            loaded = load(problem)
            if loaded is None:
                print(f"{problem}: data absent, skipped")
                continue
            C, Z = loaded
            for threads in args.threads.split(","):
                th = 1 if threads == "1" else "default"
                for l1 in map(float, args.l1.split(",")):
                    for batch in map(int, args.batches.split(",")):
                        r = run_cell(C, Z, l1, batch, th, args.reps,
                                     with_transform=(batch == 1))
                        r["problem"] = problem
                        results.append(r)
                        print(fmt_row(problem, r), flush=True)
        (out / "bench_peers.json").write_text(json.dumps({"machine": info, "rows": results}))
    if not args.no_plot:
        C, Z = load("lvis")
        curves, floor = gap_vs_time(C, Z, 0.25, out / "bench_peers_gap_vs_time.png")
        print("gap vs time (ms/sample, mean rel. gap):", json.dumps(curves), f"floor {floor:.4f}")
    print("load average at the end:", os.getloadavg())


if __name__ == "__main__":
    main()
