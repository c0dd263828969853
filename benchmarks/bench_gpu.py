"""GPU benchmark: the solvers on CUDA against one ``Z @ C.T`` and a reference-style ADMM.

Usage (on the GPU machine; under 5 minutes on one H100)::

    python benchmarks/bench_gpu.py                  # full GPU suite
    python benchmarks/bench_gpu.py --smoke          # tiny problem, runs on the CPU too (a test)
    python benchmarks/bench_gpu.py --out "$OUT"     # where the table, JSON and PNG go

Problem: ``min_{w >= 0} ||z - C^T w||^2 + l1 sum(w)``, ``l1 = 0.25``, a
synthetic CLIP-like dictionary (``_problems.py``) of 10,000 concepts (and
37,445, the full LAION vocabulary size, for memory), ``d = 512``, one batch
of 1,024 inputs.  Targets: at least 100x the reference-style
ADMM (``n_concepts x n_concepts`` Cholesky, ``rho = 5``, random init, its
residual stopping rule) at equal or better objective, and within 10x of the
single matmul ``Z @ C.T`` of the batch (the "x matmul" column: time / matmul
time).  "solve()" rows include the host-device copies of the public API
(numpy in, dense numpy codes out); the "core" row runs the working-set
solver on device tensors.  Peak MB is ``torch.cuda.max_memory_allocated``
above what was allocated before the method ran (on the CPU: peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

L1 = 0.25
TOL = 1e-6


class _Memory:
    """Peak memory of one method: CUDA allocator stats, or peak RSS on the CPU."""

    def __init__(self, device):
        self.cuda = str(device).startswith("cuda")

    def __enter__(self):
        import _methods as M
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            self.base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.base = M.current_rss_mb() * 2**20
            M.reset_peak_rss()
        return self

    def __exit__(self, *exc):
        import _methods as M
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.peak_mb = max(0.0, M.peak_rss_mb() - self.base / 2**20)
        return False


def _time_matmul(Z, C, device, dtype, repeats):
    import torch
    from _methods import sync

    Zt = torch.as_tensor(Z, device=device, dtype=getattr(torch, dtype))
    Ct = torch.as_tensor(C, device=device, dtype=getattr(torch, dtype))
    out = Zt @ Ct.T
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(Zt, Ct.T, out=out)
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.min(times))


def _core_active_set(C, Z, device, repeats, **kw):
    """The working-set solver on device tensors (no host copies), best of ``repeats``."""
    import torch
    from _methods import sync

    from sksplice.solvers._kernels import working_set_solve

    C64 = torch.as_tensor(C, device=device, dtype=torch.float64)
    C32 = C64.float()
    Z64 = torch.as_tensor(Z, device=device, dtype=torch.float64)
    half = torch.full((Z.shape[0],), L1 / 2, dtype=torch.float64, device=device)
    out, times = None, []
    with torch.inference_mode():
        working_set_solve(C32, C64, Z64[:8], half[:8], tol=TOL, **kw)
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            out = working_set_solve(C32, C64, Z64, half, tol=TOL, out_dtype=torch.float64, **kw)
            sync(device)
            times.append(time.perf_counter() - t0)
    codes = out["codes"].double().cpu().numpy()
    return codes, min(times), {"n_iter": out["rounds"].cpu().numpy(),
                               "converged": out["converged"].cpu().numpy()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny problem and budgets; runs on the CPU when there is no GPU")
    ap.add_argument("--device", default=None, help="default: cuda (cpu for --smoke without GPU)")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(HERE / "results"))
    ap.add_argument("--ref-budget", type=float, default=None,
                    help="seconds for the reference-style ADMM (default 60; smoke 5)")
    args = ap.parse_args(argv)

    import _methods as M
    import torch
    from _problems import clip_like_dictionary, image_like_inputs

    from sksplice.solvers import objective_and_gap

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not args.smoke and not str(device).startswith("cuda"):
        raise SystemExit("no CUDA GPU here: run with --smoke (CPU) or on the GPU machine")
    if args.smoke:
        k, d, n, k_big, repeats = 2000, 64, 64, 6000, 2
        ref_budget = args.ref_budget or 5.0
    else:
        k, d, n, k_big, repeats = 10000, 512, 1024, 37445, 5
        ref_budget = args.ref_budget or 60.0
    t_suite = time.perf_counter()
    machine = {"python": platform.python_version(), "torch": torch.__version__,
               "device": str(device)}
    if str(device).startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(device)
    print("machine:", json.dumps(machine), flush=True)

    C = clip_like_dictionary(k, d).embeddings
    Z = image_like_inputs(C, n)
    print(f"problem: n_concepts={k}, d={d}, batch={n}, l1={L1}, tol={TOL}", flush=True)

    mm32 = _time_matmul(Z, C, device, "float32", 20 if not args.smoke else 3)
    mm64 = _time_matmul(Z, C, device, "float64", 20 if not args.smoke else 3)
    print(f"Z @ C.T: {1e3 * mm32:.3f} ms (float32), {1e3 * mm64:.3f} ms (float64)", flush=True)

    rows = []

    def record(label, dev, dtype, fn, n_timed=n, **notes):
        print(f"- {label} ...", flush=True)
        try:
            with _Memory(dev) as mem:
                codes, seconds, info = fn()
        except Exception as exc:  # noqa: BLE001 - keep the suite going; report the failure
            print(f"  ! {label} failed: {type(exc).__name__}: {exc}", flush=True)
            rows.append(dict(label=label, device=str(dev), dtype=dtype, error=repr(exc)))
            return None
        Zs = Z[:n_timed]
        obj, gap = objective_and_gap(C, Zs, np.asarray(codes, dtype=np.float64), L1)
        if "l1" in info:  # target sparsity: each sample has its own l1
            obj, gap = np.full(n_timed, np.nan), np.full(n_timed, np.nan)
        row = dict(label=label, device=str(dev), dtype=dtype, n=n_timed, seconds=seconds,
                   objective=obj, gap=gap, peak_mb=mem.peak_mb, info=info, **notes)
        rows.append(row)
        print(f"  {1e3 * seconds:.1f} ms for {n_timed} samples, max rel. gap {gap.max():.1e}",
              flush=True)
        return row

    record("active_set core", device, "float64", lambda: _core_active_set(C, Z, device, repeats))
    record("active_set solve()", device, "float64",
           lambda: M.run_solver("active_set", C, Z, L1, device=device, tol=TOL))
    record("active_set solve()", device, "float32",
           lambda: M.run_solver("active_set", C, Z.astype(np.float32), L1, device=device, tol=TOL))
    plain = {"polish": False, "warm_start": "zeros"}  # ADMM's own iterations
    record("admm (plain)", device, "float64",
           lambda: M.run_solver("admm", C, Z, L1, device=device, tol=TOL, **plain))
    record("admm (plain)", device, "float32",
           lambda: M.run_solver("admm", C, Z.astype(np.float32), L1, device=device, tol=1e-5,
                                **plain))
    record("admm (default: screen+polish)", device, "float64",
           lambda: M.run_solver("admm", C, Z, L1, device=device, tol=TOL, warm_start="screen",
                                polish=True))
    record("active_set n_nonzero=10", device, "float64",
           lambda: M.run_n_nonzero(C, Z, 10, device=device))

    def ref_trace(t, W):
        return t, objective_and_gap(C, Z, W, L1)[0]

    ref = record("reference-style ADMM", device, "float32",
                 lambda: M.reference_admm(C, Z, L1, device=device, tol=TOL, max_iter=100000,
                                          time_budget=ref_budget, trace_fn=ref_trace))
    # the CPU side of this machine, for the per-device choice of solver="auto"
    n_cpu = min(n, 256)
    record("active_set solve()", "cpu", "float64",
           lambda: M.run_solver("active_set", C, Z[:n_cpu], L1, device="cpu", tol=TOL),
           n_timed=n_cpu)
    n_lasso = min(n, 16)
    record("sklearn Lasso loop", "cpu", "float64",
           lambda: M.run_lasso_loop(C, Z[:n_lasso], L1, tol=TOL), n_timed=n_lasso)

    # larger batches amortise the per-kernel launch cost of the small steps
    sweep = []
    Zs = image_like_inputs(C, max(sweep_sizes := ((128, 256) if args.smoke else (4096, 16384))),
                           seed=3)
    for nb in sweep_sizes:
        print(f"- active_set core, batch {nb} ...", flush=True)
        try:
            t_mm = _time_matmul(Zs[:nb], C, device, "float32", 5)
            with _Memory(device) as mem:
                codes, seconds, info = _core_active_set(C, Zs[:nb], device, 2)
            _, g = objective_and_gap(C, Zs[:nb], codes, L1)
            sweep.append(dict(batch=nb, matmul_s=t_mm, seconds=seconds, peak_mb=mem.peak_mb,
                              gap=float(g.max())))
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"  ! failed: {type(exc).__name__}: {exc}", flush=True)
            sweep.append(dict(batch=nb, error=repr(exc)))
        if str(device).startswith("cuda"):
            torch.cuda.empty_cache()

    # memory at the full vocabulary size
    big_rows = []
    Cb = clip_like_dictionary(k_big, d, seed=1).embeddings
    Zb = image_like_inputs(Cb, n, seed=2)
    for label, fn in [
        ("active_set core", lambda: _core_active_set(Cb, Zb, device, 1)),
        ("reference-style ADMM", lambda: M.reference_admm(
            Cb, Zb, L1, device=device, tol=TOL, max_iter=5, time_budget=ref_budget / 3)),
    ]:
        print(f"- {label} at n_concepts={k_big} ...", flush=True)
        try:
            with _Memory(device) as mem:
                codes, seconds, info = fn()
            _, gap = objective_and_gap(Cb, Zb, np.asarray(codes, np.float64), L1)
            it = info.get("n_iter")
            big_rows.append(dict(label=label, seconds=seconds, peak_mb=mem.peak_mb,
                                 gap=float(gap.max()),
                                 n_iter=int(np.max(it)) if it is not None else None))
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory
            print(f"  ! failed: {type(exc).__name__}: {exc}", flush=True)
            big_rows.append(dict(label=label, error=repr(exc)))
        if str(device).startswith("cuda"):
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ report
    ok = [r for r in rows if "error" not in r]
    best = np.min([r["objective"] for r in ok
                   if r["n"] == n and not np.all(np.isnan(r["objective"]))], axis=0)
    ref_time = ref["seconds"] if ref else None
    header = (f"{'method':<26} {'device':<7} {'dtype':<7} {'ms/batch':>10} {'samples/s':>10} "
              f"{'x matmul':>9} {'x ref-ADMM':>10} {'rel. gap':>9} {'obj. gap':>9} "
              f"{'peak MB':>8}  notes")
    lines = [f"n_concepts={k}, d={d}, batch={n}; Z @ C.T = {1e3 * mm32:.3f} ms (float32), "
             f"{1e3 * mm64:.3f} ms (float64) on {device}", header, "-" * len(header)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['label']:<26} {r['device']:<7} {r['dtype']:<7} failed: {r['error']}")
            continue
        per_batch = r["seconds"] * n / r["n"]
        rate = r["n"] / r["seconds"]
        xmm = per_batch / mm32 if r["device"] == str(device) else float("nan")
        xref = ref_time / per_batch if ref_time else float("nan")
        og = np.max((r["objective"] - best[: r["n"]]) / best[: r["n"]])
        notes = []
        info = r["info"]
        if isinstance(info.get("converged"), (bool, np.bool_)):
            notes.append(f"{info['n_iter']} it, {'converged' if info['converged'] else 'budget'}"
                         f", setup {info['setup']:.2f} s")
        elif "converged" in info and not np.all(info["converged"]):
            notes.append(f"{int(np.sum(~np.asarray(info['converged'])))} not converged")
        if "n_iter" in info and not np.isscalar(info["n_iter"]):
            notes.append(f"iter/rounds median {np.median(info['n_iter']):.0f}")
        if r["n"] < n:
            notes.append(f"{r['n']} samples, scaled to the batch")
        lines.append(
            f"{r['label']:<26} {r['device']:<7} {r['dtype']:<7} {1e3 * per_batch:>10.2f} "
            f"{rate:>10.0f} {xmm:>9.1f} {xref:>10.1f} {r['gap'].max():>9.1e} {og:>9.1e} "
            f"{r['peak_mb']:>8.0f}  {'; '.join(notes)}")
    lines.append("")
    lines.append(f"active_set core on larger batches (n_concepts={k}):")
    for r in sweep:
        if "error" in r:
            lines.append(f"  batch {r['batch']:>6}: failed: {r['error']}")
        else:
            lines.append(f"  batch {r['batch']:>6}: {1e3 * r['seconds']:9.2f} ms, "
                         f"{r['batch'] / r['seconds']:9.0f} samples/s, x matmul "
                         f"{r['seconds'] / r['matmul_s']:6.1f} "
                         f"(Z @ C.T {1e3 * r['matmul_s']:.3f} ms)"
                         f", rel. gap {r['gap']:.1e}, peak {r['peak_mb']:.0f} MB")
    lines.append("")
    lines.append(f"n_concepts={k_big} (memory):")
    for r in big_rows:
        if "error" in r:
            lines.append(f"  {r['label']:<24} failed: {r['error']}")
        else:
            lines.append(f"  {r['label']:<24} {1e3 * r['seconds']:>10.1f} ms  peak "
                         f"{r['peak_mb']:>8.0f} MB  rel. gap {r['gap']:.1e}  "
                         f"({r['n_iter']} it)" if r["label"].startswith("reference") else
                         f"  {r['label']:<24} {1e3 * r['seconds']:>10.1f} ms  peak "
                         f"{r['peak_mb']:>8.0f} MB  rel. gap {r['gap']:.1e}")
    fastest = min((r for r in ok if r["device"] == str(device) and "n_nonzero" not in r["label"]
                   and r["gap"].max() <= 1e-5), key=lambda r: r["seconds"] / r["n"], default=None)
    if fastest is not None:
        lines.append(f"\nfastest exact method on {device}: {fastest['label']} ({fastest['dtype']})")
    lines.append(f"suite time {time.perf_counter() - t_suite:.0f} s")
    text = "\n".join(lines)
    print("\n" + text)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu.txt").write_text(json.dumps(machine) + "\n\n" + text + "\n")
    (out / "bench_gpu.json").write_text(json.dumps({
        "machine": machine, "matmul_s": {"float32": mm32, "float64": mm64},
        "rows": [{k_: (np.asarray(v, dtype=float).tolist() if isinstance(v, np.ndarray) else v)
                  for k_, v in r.items() if k_ != "info"} for r in rows],
        "big": big_rows, "sweep": sweep}, default=float))
    _plot(rows, ref, best, n, out / "bench_gpu_gap_vs_time.png", device, C, Z, repeats)


def _plot(rows, ref, best, n, path, device, C, Z, repeats):
    """Objective gap to the best against time: active_set rounds and the reference trace."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        print("matplotlib missing: no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    floor = 1e-16
    xs, ys = [], []
    for rounds in (1, 2, 3, 4, 100):
        codes, sec, _ = _core_active_set(C, Z, device, 3, max_rounds=rounds)
        from sksplice.solvers import objective_and_gap

        obj, _ = objective_and_gap(C, Z, codes, L1)
        xs.append(1e3 * sec)
        ys.append(max(floor, float(np.mean((obj - best) / best))))
    ax.plot(xs, ys, "o-", label="active_set core (rounds 1-4, all)")
    for r in rows:
        if "error" in r or r["n"] != n or "n_nonzero" in r["label"]:
            continue
        if r["label"].startswith("reference"):
            continue
        ax.plot([1e3 * r["seconds"]], [max(floor, float(np.mean(
            (r["objective"] - best) / best)))], "s",
            label=f"{r['label']} ({r['dtype']}, {r['device']})")
    if ref and ref["info"].get("trace"):
        tr = ref["info"]["trace"]
        ax.plot([1e3 * t for t, _ in tr],
                [max(floor, float(np.mean((o - best) / best))) for _, o in tr],
                "-", label="reference-style ADMM")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time per batch (ms)")
    ax.set_ylabel("mean relative objective gap to the best")
    ax.set_title(f"GPU benchmark ({device})")
    ax.axhline(1e-6, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
