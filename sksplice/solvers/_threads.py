"""The thread policy of the torch solvers: small problems run single-threaded.

On a machine whose cores are shared (other processes, other engineers'
jobs), an OpenMP team of ``torch.get_num_threads()`` threads waits for its
slowest member at every parallel region; a solve made of many small ops
then runs several times slower than on one thread (measured in
``benchmarks/bench_solvers.py``: a 64-sample LVIS batch took 3-34x longer
with 2 threads on 2 busy cores).  The working-set solver therefore runs
its many small steps on one thread, and only its batched correlation
matmuls -- and only above ``PARALLEL_MIN_WORK`` multiply-adds -- with the
caller's setting (torch's default, or what ``torch.set_num_threads``
chose); the compiled kernel parallelises over samples on that many
threads.  The scope also limits numpy's BLAS (OpenBLAS/MKL, through
threadpoolctl, a scikit-learn dependency), whose own thread pool collapses
the same way.  The scope is restored on exit, so the policy never leaks.
"""

from __future__ import annotations

from contextlib import contextmanager

__all__ = ["PARALLEL_MIN_WORK", "solve_threads", "thread_scope"]

#: Multiply-adds of one ``(batch x d) @ (d x n_concepts)`` product below which a
#: solve runs on one thread: 2**27 is about 256 samples x 1,024 concepts x 512
#: features, the size at which the 2-thread matmul first beat 1 thread on a
#: loaded 2-core machine (``benchmarks/bench_solvers.py --threads``).
PARALLEL_MIN_WORK = 1 << 27


def solve_threads(n_samples, n_concepts, n_features, n_threads=None):
    """Number of torch threads a solve of this size uses.

    Parameters
    ----------
    n_samples, n_concepts, n_features : int
        Shape of the batch and the dictionary.
    n_threads : int, default=None
        An explicit choice (returned as is); ``None`` applies the policy.

    Returns
    -------
    n : int
        Threads to use (``1`` for small problems, else the current setting).
    """
    import torch

    if n_threads is not None:
        return max(1, int(n_threads))
    if n_samples * n_concepts * n_features < PARALLEL_MIN_WORK:
        return 1
    return torch.get_num_threads()


_CONTROLLER = []


def _blas_controller():
    """threadpoolctl's controller, built once (inspecting the libraries takes ms)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


@contextmanager
def thread_scope(n_threads):
    """Run the block with ``n_threads`` torch and BLAS threads, restored on exit.

    Parameters
    ----------
    n_threads : int
        Threads inside the block.

    Yields
    ------
    None
    """
    import torch

    before = torch.get_num_threads()
    with _blas_controller().limit(limits=n_threads, user_api="blas"):
        if n_threads == before:
            yield
            return
        torch.set_num_threads(n_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
