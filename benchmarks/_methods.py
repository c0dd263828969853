"""Methods compared by the benchmarks (shared by ``bench_solvers.py`` and ``bench_gpu.py``).

Every runner takes the prepared dictionary ``C`` (n_concepts, d), centred
unit-norm inputs ``Z`` (n, d) and ``l1``, and returns ``(codes, seconds,
info)``; objectives and duality gaps are computed afterwards, in float64, by
:func:`sksplice.solvers.objective_and_gap`, the same for every method.
"""

from __future__ import annotations

import time
import warnings


def sync(device):
    """Wait for the device (a no-op on the CPU)."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device="cpu", repeats=1, max_seconds=5.0):
    """Best wall-clock time of ``fn()`` over up to ``repeats`` runs (timeit's rule).

    Runs stop once their total exceeds ``max_seconds`` (so a method slower
    than that is timed once); the result of
    the last run is returned with the best time.  Other people's jobs on a
    shared machine only ever add time, so the minimum is the most faithful
    figure, and every method gets the same rule.
    """
    best, total, out = float("inf"), 0.0, None
    for _ in range(max(1, repeats)):
        out = None  # free the previous result before measuring again
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        dt = time.perf_counter() - t0
        best, total = min(best, dt), total + dt
        if total > max_seconds:
            break
    return out, best


def run_solver(name, C, Z, l1, *, device="cpu", batch_size=1024, warmup=True, repeats=5,
               **options):
    """A registered sksplice solver (``solver.solve``), timed after a small warm-up.

    The warm-up moves the dictionary to the device and builds the solver's
    cached views of it (a one-off cost per dictionary, like loading it).
    """
    from sksplice.solvers import get_solver

    solver = get_solver(name, device=device, batch_size=batch_size, **options)
    if warmup:
        solver.solve(C, Z[: min(8, len(Z))], l1)
    res, seconds = timed(lambda: solver.solve(C, Z, l1), device, repeats)
    return res.codes, seconds, {"n_iter": res.n_iter, "converged": res.converged}


def run_n_nonzero(C, Z, n_nonzero, *, device="cpu", batch_size=1024, repeats=5):
    """Target-sparsity mode (homotopy for each sample's l1, then the exact solve)."""
    from sksplice.solvers import solve_n_nonzero

    solve_n_nonzero(C, Z[:8], n_nonzero, device=device)
    res, seconds = timed(
        lambda: solve_n_nonzero(C, Z, n_nonzero, device=device, batch_size=batch_size),
        device, repeats)
    return res.codes, seconds, {"l1": res.extra["l1"]}


def run_lasso_loop(C, Z, l1, *, tol=1e-6, repeats=5):
    """The reference implementation's default: one ``sklearn.linear_model.Lasso`` per sample."""
    from sksplice.solvers import LassoSolver

    solver = LassoSolver(tol=tol, n_jobs=1)
    res, seconds = timed(lambda: solver.solve(C, Z, l1), "cpu", repeats)
    return res.codes, seconds, {}


def sparse_coder_alpha(l1):
    """``transform_alpha`` of ``SparseCoder(transform_algorithm="lasso_cd")`` for SpLiCE's ``l1``.

    ``sparse_encode`` passes ``alpha / n_features`` to ``Lasso``, whose
    objective is ``1/(2 d) ||z - D^T w||^2 + (alpha / d) ||w||_1``; times
    ``2 d`` this is ``||z - D^T w||^2 + 2 alpha ||w||_1``, so ``alpha = l1 / 2``.
    """
    return l1 / 2.0


def run_sparse_coder(C, Z, l1, *, n_jobs=2, max_iter=10000):
    """``sklearn.decomposition.SparseCoder(positive_code=True, transform_algorithm="lasso_cd")``.

    Its ``transform`` computes the ``n_concepts x n_concepts`` Gram matrix
    on every call (it is part of the method's cost) and runs coordinate
    descent with scikit-learn's default ``tol=1e-4``, which it does not expose.
    """
    from sklearn.decomposition import SparseCoder

    coder = SparseCoder(C, transform_algorithm="lasso_cd", transform_alpha=sparse_coder_alpha(l1),
                        positive_code=True, n_jobs=n_jobs, transform_max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coder.transform(Z[:8])  # starts joblib's workers (a one-off cost)
        W, seconds = timed(lambda: coder.transform(Z), "cpu", repeats=5)
    return W, seconds, {}


def reference_admm(C, Z, l1, *, rho=5.0, tol=1e-6, max_iter=10000, device="cpu",
                   dtype="float32", seed=0, time_budget=None, trace_fn=None):
    """ADMM as in the SpLiCE reference implementation (for comparison only).

    Written here from the method's description: an ``n_concepts x
    n_concepts`` Cholesky factor of ``2 C C^T + rho I`` computed per call,
    random (Gaussian) initialisation of all three variables, a fixed
    ``rho = 5``, and its stopping rule: the largest primal residual
    ``||x - w||`` and dual residual ``rho ||w - w_old||`` over the batch both
    below ``tol``.  torch's default float32.

    Parameters
    ----------
    time_budget : float, default=None
        Stop after this many seconds (reported as not converged).
    trace_fn : callable, default=None
        Called as ``trace_fn(seconds, codes)`` at geometrically spaced
        iterations (1, 2, 3, 5, 8, ... about 1.5x apart; its time is
        excluded), for objective-vs-time curves; what it returns is collected
        in ``info["trace"]``.

    Returns
    -------
    codes, seconds, info
        ``info`` holds ``n_iter``, ``converged``, ``setup`` (seconds of the
        factorisation) and ``trace``.
    """
    import torch

    dt = getattr(torch, dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.inference_mode():
        Ct = torch.as_tensor(C, dtype=dt, device=device)
        V = torch.as_tensor(Z, dtype=dt, device=device)
        k = Ct.shape[0]
        n = V.shape[0]
        sync(device)
        t0 = time.perf_counter()
        Q = 2.0 * (Ct @ Ct.T)
        Q.diagonal().add_(rho)
        L = torch.linalg.cholesky(Q)
        del Q
        Cb = 2.0 * (Ct @ V.T)
        x = torch.randn((k, n), generator=gen, dtype=dt, device=device)
        w = torch.randn((k, n), generator=gen, dtype=dt, device=device)
        u = torch.randn((k, n), generator=gen, dtype=dt, device=device)
        sync(device)
        setup = time.perf_counter() - t0
        trace, excluded = [], 0.0
        trace_at = {int(1.5**j) for j in range(60)}
        converged = False
        it = 0
        for it in range(1, max_iter + 1):
            w_old = w
            x = torch.cholesky_solve(Cb + rho * (w - u), L)
            w = (x + u - l1 / rho).clamp_min(0.0)
            u = u + x - w
            r_p = torch.linalg.vector_norm(x - w, dim=0).max()
            r_d = (rho * torch.linalg.vector_norm(w - w_old, dim=0)).max()
            if trace_fn is not None and it in trace_at:
                sync(device)
                t1 = time.perf_counter()
                trace.append(trace_fn(t1 - t0 - excluded, w.T.double().cpu().numpy()))
                excluded += time.perf_counter() - t1
            if bool((r_p < tol) & (r_d < tol)):
                converged = True
                break
            if time_budget is not None and time.perf_counter() - t0 - excluded > time_budget:
                break
        W = w.T.double().cpu().numpy()
        sync(device)
        elapsed = time.perf_counter() - t0 - excluded
    return W, elapsed, {"n_iter": it, "converged": converged, "setup": setup, "trace": trace}


def reset_peak_rss():
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:  # pragma: no cover - non-Linux or restricted
        return False


def peak_rss_mb():
    """Peak resident memory of this process (since the last reset), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - non-Linux
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
    """Current resident memory of this process, in MB."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - non-Linux
        return float("nan")


# ------------------------------------------------------------------ optional peers
def spams_lasso(C, l1, *, threads=1):
    """SPAMS's batched LARS (``spams.lasso(pos=True, mode=2)``) with the Gram precomputed once.

    ``spams.lasso`` minimises ``1/2 ||z - D w||^2 + lambda1 ||w||_1``; times 2
    this is SpLiCE's objective with ``lambda1 = l1 / 2``.  Returns a function
    ``Z -> codes`` (CSR), or ``None`` when ``spams`` (package ``spams-bin``,
    the ``bench`` extra) is not installed.  The Gram matrix ``C C^T`` is
    computed here, outside the timed function (SPAMS's fastest mode).
    """
    try:
        import spams
    except ImportError:
        return None
    import numpy as np

    G = np.asfortranarray(C @ C.T)
    Ct = np.ascontiguousarray(C)

    def solve(Z):
        Zf = np.asfortranarray(Z.T)
        q = np.asfortranarray(Ct @ Zf)
        W = spams.lasso(Zf, Q=G, q=q, pos=True, mode=2, lambda1=l1 / 2.0, lambda2=0.0,
                        numThreads=threads)
        return W.T.tocsr()

    return solve


def _sklearn_like_loop(module, C, l1, tol):
    """A per-sample loop of ``module.Lasso(positive=True)`` (skglm or celer)."""
    try:
        mod = __import__(module)
    except ImportError:
        return None
    import numpy as np

    A = np.asfortranarray(C.T)
    d = C.shape[1]
    est = mod.Lasso(alpha=l1 / (2.0 * d), positive=True, fit_intercept=False, tol=tol)

    def solve(Z):
        W = np.zeros((Z.shape[0], C.shape[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, z in enumerate(Z):
                W[i] = est.fit(A, z).coef_
        return W

    return solve


def skglm_loop(C, l1, *, tol=1e-8):
    """``skglm.Lasso(positive=True)`` per sample (``None`` if skglm is absent).

    Its objective is scikit-learn's (``alpha = l1 / (2 d)``); ``tol`` is on
    its own scale: 1e-8 meets a relative duality gap of 1e-6 on these problems.
    """
    return _sklearn_like_loop("skglm", C, l1, tol)


def celer_loop(C, l1, *, tol=1e-8):
    """``celer.Lasso(positive=True)`` per sample (``None`` if celer is absent)."""
    return _sklearn_like_loop("celer", C, l1, tol)


def sksplice_solve(C, l1, **options):
    """This package's default solver (``get_solver("auto")``) as ``Z -> CSR codes``."""
    from sksplice.solvers import get_solver

    solver = get_solver("auto", device="cpu", **options)
    solver.solve(C, C[:2] * 0.5, l1)  # caches the dictionary views (a one-off cost)

    def solve(Z):
        return solver.solve(C, Z, l1, sparse_output=True).codes

    return solve


def transform_latency(C, l1):
    """``SpliceTransformer.transform`` on one embedding (what a user calls), or None.

    Fitted on the prepared dictionary with no image mean, so it measures the
    estimator's overhead over the solver on the same problem.
    """
    import numpy as np

    try:
        from sksplice import ConceptDictionary, SpliceTransformer
    except ImportError:
        return None
    names = [f"c{i}" for i in range(C.shape[0])]
    cd = ConceptDictionary(names, C)
    st = SpliceTransformer(dictionary=cd, l1=l1, image_mean=None, device="cpu")
    st.fit(np.asarray(cd.embeddings[:2]))
    return st.transform


def matmul_floor(C):
    """One float32 ``Z @ C.T`` of the batch: the floor any method pays."""
    import numpy as np
    import torch

    C32 = torch.from_numpy(np.ascontiguousarray(C, dtype=np.float32))

    def solve(Z):
        return torch.from_numpy(Z.astype(np.float32)) @ C32.T

    return solve
