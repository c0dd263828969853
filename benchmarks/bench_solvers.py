"""CPU benchmark of the decomposition solvers: one command, one table, one plot.

Usage::

    python benchmarks/bench_solvers.py                 # full suite (~10-20 min on 2 cores)
    python benchmarks/bench_solvers.py --quick         # smaller subsets, fewer curves
    python benchmarks/bench_solvers.py --out results/  # where the PNG and JSON go

Problem: ``min_{w >= 0} ||z - C^T w||^2 + l1 sum(w)``, ``l1 = 0.25``, ``d = 512``,
on (1) a synthetic CLIP-like dictionary of 10,000 concepts (no real 10k
vocabulary embeddings exist offline; see ``_problems.py`` for how it matches
CLIP ViT-B/32 statistics) with 1,024 image-like inputs, and (2) the real
LVIS text embeddings (1,203 concepts) with the 1,000 ImageNet zero-shot rows.

The peers SPAMS, skglm and celer, at every batch size and l1, are in
``bench_peers.py``.

Methods: ``active_set`` (this package's exact working-set solver), ``admm``
(the batched Woodbury ADMM, plain, and by default with screening + exact
polishing), the
per-sample scikit-learn ``Lasso`` loop (the reference implementation's
default, the *baseline* of the ratio column), ``SparseCoder(positive_code=
True, transform_algorithm="lasso_cd", n_jobs=2)`` and a reference-style ADMM
(``n_concepts x n_concepts`` Cholesky, ``rho=5``, random init, its residual
stopping rule).  Slow methods are timed on a subset of the samples and
reported per sample (the "timed" column says how many).

Every method runs in its own subprocess, so that "peak MB" (the increase of
the process's peak resident memory over its baseline after loading the data)
is the method's own.  Objectives and relative duality gaps are computed the
same way for all methods, in float64; "obj. gap" is the relative excess
over the best objective any method found for that sample (max over the
timed samples).  Each solver targets a relative duality gap of 1e-6.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

L1 = 0.25
TOL = 1e-6
#: ADMM's own iterations, without the default screening and exact polishing
PLAIN_ADMM = {"polish": False, "warm_start": "zeros"}


# ------------------------------------------------------------------ worker side
def _load_problem(problem, n_concepts, n):
    from _problems import clip_like_dictionary, image_like_inputs, lvis_problem

    if problem == "lvis":
        out = lvis_problem()
        if out is None:
            raise FileNotFoundError("../shared/data/clip-vit-b32 is absent")
        C, Z = out
        return C, Z[:n]
    C = clip_like_dictionary(n_concepts).embeddings
    return C, image_like_inputs(C, 1024 if n <= 1024 else n)[:n]


def _run_method(spec, C, Z):
    import _methods as M

    m, opts = spec["method"], dict(spec.get("options", {}))
    bs = spec.get("batch", 1024)
    if m in ("active_set", "admm", "sklearn"):
        return M.run_solver(m, C, Z, L1, device="cpu", batch_size=bs, tol=TOL, **opts)
    if m == "n_nonzero":
        return M.run_n_nonzero(C, Z, opts["n_nonzero"], device="cpu", batch_size=bs)
    if m == "lasso":
        return M.run_lasso_loop(C, Z, L1, tol=opts.get("tol", TOL))
    if m == "sparse_coder":
        return M.run_sparse_coder(C, Z, L1, n_jobs=2, **opts)
    if m == "reference_admm":
        from sksplice.solvers import objective_and_gap

        def trace_fn(t, W):
            return t, objective_and_gap(C, Z.astype(np.float64), W, L1)[0].tolist()

        return M.reference_admm(C, Z, L1, device="cpu", tol=opts.pop("tol", TOL),
                                trace_fn=trace_fn, **opts)
    raise ValueError(m)


def worker(spec, out_path):
    """Run one method (or one curve of settings) and write its results."""
    import _methods as M
    import torch

    from sksplice.solvers import objective_and_gap

    torch.manual_seed(0)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    C, Z64 = _load_problem(spec["problem"], spec.get("n_concepts", 10000), spec["n"])
    # a float32 run solves the float32-rounded inputs; it is scored on the
    # float64 problem like every other method
    Z = Z64.astype(spec.get("dtype", "float64"))
    rss0 = M.current_rss_mb()
    M.reset_peak_rss()
    points = []
    settings = spec.get("curve") or [spec.get("options", {})]
    codes = None
    peak = None
    for opts in settings:
        s = dict(spec, options=opts)
        codes, seconds, info = _run_method(s, C, Z)
        if peak is None:  # the method's own peak, before the scoring below
            peak = M.peak_rss_mb()
        obj, gap = objective_and_gap(C, Z64, np.asarray(codes, np.float64), L1)
        if spec["method"] == "n_nonzero":
            obj, gap = np.full(len(Z), np.nan), np.full(len(Z), np.nan)
        pt = {"seconds": seconds, "objective": obj.tolist(), "gap": gap.tolist(),
              "options": {k: v for k, v in opts.items() if np.isscalar(v)}}
        if "n_iter" in info:
            pt["n_iter"] = np.asarray(info["n_iter"]).tolist()
        if "converged" in info:
            pt["converged"] = np.asarray(info["converged"]).tolist()
        if "setup" in info:
            pt["trace"] = info["trace"]
            pt["setup"] = info["setup"]
            pt["n_iter"] = info["n_iter"]
            pt["converged"] = [bool(info["converged"])] * len(Z)
        if spec["method"] == "n_nonzero":
            pt["nnz"] = (np.asarray(codes) > 0).sum(axis=1).tolist()
        points.append(pt)
    result = {"spec": spec, "points": points, "rss_base_mb": rss0,
              "peak_mb": max(0.0, peak - rss0), "load": os.getloadavg()[0]}
    Path(out_path).write_text(json.dumps(result))


# ------------------------------------------------------------------ parent side
def _spawn(spec, timeout):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec),
               "--worker-out", str(out)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"  ! {spec['label']}: timed out after {timeout:.0f} s", flush=True)
            return None
        if proc.returncode != 0 or not out.exists():
            print(f"  ! {spec['label']} failed:\n{proc.stderr[-2000:]}", flush=True)
            return None
        res = json.loads(out.read_text())
        res["wall"] = time.perf_counter() - t0
        return res


def _specs(quick):
    n_big = 1024
    sub = dict(lasso=16 if quick else 48, admm=32 if quick else 64, coder=128 if quick else 256,
               ref=64 if quick else 256)
    ref_budget = 20.0 if quick else 90.0
    syn = dict(problem="synthetic", n_concepts=10000)
    table = [
        dict(syn, label="active_set", method="active_set", n=n_big, batch=1024),
        dict(syn, label="active_set (float32 in)", method="active_set", n=n_big, batch=1024,
             dtype="float32"),
        dict(syn, label="active_set (1 thread)", method="active_set", n=n_big, batch=1024,
             threads=1),
        dict(syn, label="active_set n_nonzero=10", method="n_nonzero", n=n_big, batch=1024,
             options={"n_nonzero": 10}),
        dict(syn, label="admm (plain)", method="admm", n=sub["admm"], batch=sub["admm"],
             options=PLAIN_ADMM),
        dict(syn, label="admm (default)", method="admm", n=sub["admm"], batch=sub["admm"]),
        dict(syn, label="sklearn Lasso loop", method="lasso", n=sub["lasso"], batch=1),
        dict(syn, label="SparseCoder n_jobs=2", method="sparse_coder", n=sub["coder"],
             batch=sub["coder"]),
        dict(syn, label="reference-style ADMM", method="reference_admm", n=sub["ref"],
             batch=sub["ref"], options={"time_budget": ref_budget}),
    ]
    if not quick:
        table.insert(7, dict(syn, label="SparseCoder n_jobs=2", method="sparse_coder", n=n_big,
                             batch=n_big))
    lvis = dict(problem="lvis", n_concepts=1203)
    table += [
        dict(lvis, label="active_set", method="active_set", n=1000, batch=1000),
        dict(lvis, label="admm (plain)", method="admm", n=250 if quick else 1000,
             batch=250 if quick else 1000, options=PLAIN_ADMM),
        dict(lvis, label="sklearn Lasso loop", method="lasso", n=50 if quick else 200, batch=1),
        dict(lvis, label="SparseCoder n_jobs=2", method="sparse_coder", n=1000, batch=1000),
    ]
    big = dict(problem="synthetic", n_concepts=37445)
    table += [
        dict(big, label="active_set", method="active_set", n=256 if quick else n_big,
             batch=256 if quick else n_big),
        dict(big, label="admm (plain)", method="admm", n=32, batch=32,
             options={"max_iter": 200, **PLAIN_ADMM}),
        dict(big, label="sklearn Lasso loop", method="lasso", n=4 if quick else 8, batch=1),
    ]
    n_curve = 128 if quick else 256
    curves = [
        dict(syn, label="active_set", method="active_set", n=n_curve, batch=n_curve,
             curve=[{"max_iter": r} for r in (1, 2, 3, 4, 100)]),
        dict(syn, label="admm (plain)", method="admm", n=32 if quick else 64,
             batch=32 if quick else 64,
             curve=[{"max_iter": it, **PLAIN_ADMM} for it in ((20, 100, 400) if quick else
                                                              (20, 50, 100, 200, 400))]),
        dict(syn, label="admm (default)", method="admm", n=32 if quick else 64,
             batch=32 if quick else 64,
             curve=[{"polish_tol": p}
                    for p in ((1e-1, 1e-3) if quick else (1e-1, 1e-2, 1e-3, 1e-4))]),
        dict(syn, label="sklearn Lasso loop", method="lasso", n=8 if quick else 16, batch=1,
             curve=[{"tol": t} for t in ((1e-2, 1e-6) if quick else (1e-1, 1e-2, 1e-3, 1e-4,
                                                                      1e-6, 1e-8))]),
        dict(syn, label="SparseCoder n_jobs=2", method="sparse_coder", n=64 if quick else 128,
             batch=64 if quick else 128,
             curve=[{"max_iter": it} for it in ((2, 1000) if quick else (1, 3, 10, 30, 1000))]),
    ]
    return table, curves


def _machine():
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            key, _, val = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core"):
                info[key.strip()] = val.strip()
    except OSError:  # pragma: no cover
        pass
    import sklearn
    import torch

    info.update(torch=torch.__version__, sklearn=sklearn.__version__,
                torch_threads=torch.get_num_threads())
    try:
        info["load_avg"] = os.getloadavg()
    except OSError:  # pragma: no cover
        pass
    return info


def _table(results):
    """Rows of the printed table, the baseline being each problem's Lasso loop."""
    by_problem = {}
    for r in results:
        by_problem.setdefault((r["spec"]["problem"], r["spec"]["n_concepts"]), []).append(r)
    lines = []
    header = (f"{'problem':<16} {'method':<26} {'dtype':<7} {'batch':>5} {'timed':>5} "
              f"{'ms/sample':>10} {'samples/s':>10} {'x Lasso':>8} {'rel. gap':>9} "
              f"{'obj. gap':>9} {'peak MB':>8}  notes")
    lines += [header, "-" * len(header)]
    for (problem, k), rs in by_problem.items():
        n_max = max(r["spec"]["n"] for r in rs)
        best = np.full(n_max, np.inf)
        for r in rs:
            for p in r["points"]:
                o = np.asarray(p["objective"], dtype=float)
                best[: len(o)] = np.fmin(best[: len(o)], o)
        base = [r for r in rs if r["spec"]["method"] == "lasso"]
        base_rate = None
        if base:
            p = base[0]["points"][0]
            base_rate = base[0]["spec"]["n"] / p["seconds"]
        for r in rs:
            s, p = r["spec"], r["points"][0]
            n = s["n"]
            ms = 1e3 * p["seconds"] / n
            rate = n / p["seconds"]
            ratio = f"{rate / base_rate:8.1f}" if base_rate else f"{'-':>8}"
            obj = np.asarray(p["objective"], dtype=float)
            gap = np.asarray(p["gap"], dtype=float)
            if np.all(np.isnan(obj)):
                rel, og = f"{'-':>9}", f"{'-':>9}"
            else:
                rel = f"{np.max(gap):9.1e}"
                og = f"{np.max((obj - best[:n]) / best[:n]):9.1e}"
            notes = []
            if "converged" in p and not all(p["converged"]):
                notes.append(f"{n - sum(p['converged'])} not converged")
            if s.get("options", {}).get("max_iter") and s["method"] == "admm":
                notes.append(f"max_iter={s['options']['max_iter']} (memory only)")
            if s["method"] == "reference_admm":
                notes.append("float32 inside")
                how = "converged" if all(p.get("converged", [False])) else "time budget"
                notes.append(f"{p.get('n_iter', '?')} it, {how}, setup {p.get('setup', 0):.1f} s")
            if s["method"] == "n_nonzero":
                nnz = np.asarray(p["nnz"])
                notes.append(f"nnz = 10 for {np.mean(nnz == 10):.0%}")
            if s["method"] in ("active_set", "admm") and isinstance(p.get("n_iter"), list):
                it = np.asarray(p["n_iter"])
                unit = "rounds" if s["method"] == "active_set" else "it"
                notes.append(f"{unit} median {np.median(it):.0f} max {it.max()}")
            if n < max(x["spec"]["n"] for x in rs):
                notes.append("subset")
            notes.append(f"load {r.get('load', float('nan')):.1f}")
            lines.append(
                f"{problem + f' k={k}':<16} {s['label']:<26} {s.get('dtype', 'float64'):<7} "
                f"{s.get('batch', 1):>5} {n:>5} {ms:>10.2f} {rate:>10.1f} {ratio} {rel} {og} "
                f"{r['peak_mb']:>8.0f}  {'; '.join(notes)}")
        lines.append("")
    return "\n".join(lines)


def _plot(results, curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allr = [r for r in results + curves
            if r["spec"]["problem"] == "synthetic" and r["spec"]["n_concepts"] == 10000]
    n_max = max(r["spec"]["n"] for r in allr)
    best = np.full(n_max, np.inf)
    for r in allr:
        for p in r["points"]:
            o = np.asarray(p["objective"], dtype=float)
            if not np.all(np.isnan(o)):
                best[: len(o)] = np.fmin(best[: len(o)], o)
            for _, to in p.get("trace", []):
                best[: len(to)] = np.fmin(best[: len(to)], np.asarray(to))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    floor = 1e-16
    for r in curves:
        n = r["spec"]["n"]
        xs = [1e3 * p["seconds"] / n for p in r["points"]]
        ys = [max(floor, float(np.mean((np.asarray(p["objective"]) - best[:n]) / best[:n])))
              for p in r["points"]]
        # in the order of increasing effort (iterations, tolerance)
        ax.plot(xs, ys, "o-", label=r["spec"]["label"])
    for r in results:
        if r["spec"]["method"] == "reference_admm" and r["points"][0].get("trace"):
            n = r["spec"]["n"]
            tr = r["points"][0]["trace"]
            xs = [1e3 * t / n for t, _ in tr]
            ys = [max(floor, float(np.mean((np.asarray(o) - best[:n]) / best[:n])))
                  for _, o in tr]
            ax.plot(xs, ys, "-", label="reference-style ADMM")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time per sample (ms)")
    ax.set_ylabel("mean relative objective gap to the best found")
    ax.set_title("n_concepts=10,000, d=512, l1=0.25 (CPU)")
    ax.axhline(1e-6, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller subsets and fewer curve points")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the PNG and JSON")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated labels to run (table rows)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per method")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker), args.worker_out)
        return
    table, curves = _specs(args.quick)
    if args.only:
        keep = set(args.only.split(","))
        table = [s for s in table if s["label"] in keep]
        curves = [s for s in curves if s["label"] in keep]
    if args.no_plot:
        curves = []
    machine = _machine()
    print("machine:", json.dumps(machine))
    print(f"l1={L1}, tol={TOL}, d=512; one subprocess per method", flush=True)
    results, curve_results = [], []
    t0 = time.perf_counter()
    for spec in table:
        print(f"- {spec['problem']} k={spec['n_concepts']}: {spec['label']} "
              f"({spec['n']} samples)", flush=True)
        r = _spawn(spec, args.timeout)
        if r is not None:
            results.append(r)
    for spec in curves:
        print(f"- curve: {spec['label']}", flush=True)
        r = _spawn(spec, args.timeout)
        if r is not None:
            curve_results.append(r)
    print(f"\nsuite time {time.perf_counter() - t0:.0f} s; load average now "
          f"{os.getloadavg() if hasattr(os, 'getloadavg') else '?'}\n")
    text = _table(results)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_solvers.txt").write_text(json.dumps(machine) + "\n\n" + text + "\n")
    (out / "bench_solvers.json").write_text(json.dumps(
        {"machine": machine, "results": results, "curves": curve_results}))
    if curve_results:
        _plot(results, curve_results, out / "bench_solvers_gap_vs_time.png")
        print(f"plot: {out / 'bench_solvers_gap_vs_time.png'}")


if __name__ == "__main__":
    main()
