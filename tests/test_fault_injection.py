"""Fault injection: interrupt decomposition runs and dictionary-cache writes, then resume.

Two kinds of fault, both seeded:

* **Injected crashes** (in process): the k-th file write of a
  ``decompose_to_shards`` run crashes *before* writing, *half-way* (leaving a
  partial temporary file, as a killed writer would) or *just after* the file
  is in place.  Every write of a run is tried in each mode, then random
  sequences of crashes hit successive resumptions.
* **Kills** (``SIGKILL``, real processes): a ``decompose_to_shards`` run, and
  a ``build_dictionary`` cache write, are killed at random moments, many times
  over the same folder, then run to the end.

After every fault the folder either loads as exactly the uninterrupted result
or refuses to load (incomplete); after the final resumption it equals the
uninterrupted run: no row lost, duplicated or changed, no temporary file left.
The counts are printed (``pytest -s``) and quoted in docs/reliability.md.
``SKSPLICE_LONG_TESTS=1`` runs the longer seeded loops.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _shard_helpers import image_tree, same_decomposition, toy_estimator

LONG = os.environ.get("SKSPLICE_LONG_TESTS") == "1"
TESTS = Path(__file__).resolve().parent
LAYOUT = [f"{c}/{i}.png" for c in ("a", "b", "c") for i in range(3)] + ["loose.png"]
BROKEN = {"b/1.png"}


class Crash(BaseException):
    """What an injected fault raises (not an Exception: nothing may swallow it)."""


class Faults:
    """Replaces ``atomic_write`` in the shard modules; crashes at write number ``at``."""

    def __init__(self, monkeypatch, at=None, mode="before", rng=None):
        from sksplice import _io
        from sksplice.shards import _format, _summary

        self.real, self.at, self.mode, self.n = _io.atomic_write, at, mode, 0
        self.rng = rng or np.random.default_rng(0)
        for module in (_format, _summary):
            monkeypatch.setattr(module, "atomic_write", self)

    def __call__(self, path, write):
        self.n += 1
        if self.n != self.at:
            return self.real(path, write)
        path = Path(path)
        if self.mode == "before":
            raise Crash(f"before writing {path.name}")
        if self.mode == "partial":  # the debris a killed writer leaves
            buf = io.BytesIO()
            write(buf)
            data = buf.getvalue()
            cut = int(self.rng.integers(0, max(len(data), 1)))
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / f".{path.name}.{self.rng.integers(1 << 30):x}.tmp").write_bytes(
                data[:cut])
            raise Crash(f"half-way through {path.name}")
        self.real(path, write)
        raise Crash(f"after writing {path.name}")


def _run(root, out, est, summary=True):
    from sksplice.shards import decompose_to_shards, list_image_files

    images, classes = list_image_files(root)
    return decompose_to_shards(images, out, est, labels=classes, root=root, shard_size=2,
                               summary=summary, plots=False)


def _state(out):
    """What a reader finds: the decomposition, or None when it (rightly) refuses."""
    from sksplice.shards import load_decomposition

    try:
        return load_decomposition(out)
    except (ValueError, FileNotFoundError):
        return None


def _check_final(out, reference_out):
    from sksplice.shards import load_decomposition

    got, ref = load_decomposition(out), load_decomposition(reference_out)
    assert same_decomposition(got, ref)  # nothing lost, duplicated or changed
    assert json.loads((out / "summary.json").read_text()) == json.loads(
        (reference_out / "summary.json").read_text())
    assert (out / "summary.csv").read_text() == (reference_out / "summary.csv").read_text()
    assert not [p for p in out.rglob("*.tmp")], "a temporary file was left behind"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    root = image_tree(tmp / "images", LAYOUT, broken=BROKEN)
    est = toy_estimator()
    _run(root, tmp / "reference", est)
    return root, est, tmp / "reference"


def _writes_per_run(root, est, tmp, monkeypatch):
    with monkeypatch.context() as m:
        faults = Faults(m)
        _run(root, tmp / "count", est)
    return faults.n


def test_one_crash_then_resume(setup, tmp_path, monkeypatch):
    root, est, reference = setup
    with monkeypatch.context() as m:
        Faults(m, at=3, mode="partial")
        with pytest.raises(Crash):
            _run(root, tmp_path / "out", est)
    assert _state(tmp_path / "out") is None  # incomplete: refused, never half-read
    _run(root, tmp_path / "out", est)
    _check_final(tmp_path / "out", reference)


@pytest.mark.slow
def test_a_crash_at_every_write_in_every_mode(setup, tmp_path, monkeypatch):
    root, est, reference = setup
    n_writes = _writes_per_run(root, est, tmp_path, monkeypatch)
    cases = 0
    for at in range(1, n_writes + 1):
        for mode in ("before", "partial", "after"):
            out = tmp_path / f"out-{at}-{mode}"
            with monkeypatch.context() as m:
                Faults(m, at=at, mode=mode)
                with pytest.raises(Crash):
                    _run(root, out, est)
            seen = _state(out)
            assert seen is None or same_decomposition(seen, _state(reference)), (at, mode)
            _run(root, out, est)
            _check_final(out, reference)
            cases += 1
    print(f"\n[fault injection] crash at each of {n_writes} writes x 3 modes: {cases} cases, "
          f"{cases} faults, 0 rows lost")
    assert cases == 3 * n_writes >= 30


@pytest.mark.slow
def test_random_crash_sequences(setup, tmp_path, monkeypatch):
    """Crash after crash on one folder (seeded), each resumption interrupted again."""
    root, est, reference = setup
    n_writes = _writes_per_run(root, est, tmp_path, monkeypatch)
    rng = np.random.default_rng(20261201)
    n_sequences = 60 if LONG else 8
    faults_injected = 0
    for seq in range(n_sequences):
        out = tmp_path / f"seq-{seq}"
        for _ in range(int(rng.integers(1, 6))):
            with monkeypatch.context() as m:
                Faults(m, at=int(rng.integers(1, n_writes + 1)),
                       mode=str(rng.choice(["before", "partial", "after"])), rng=rng)
                try:
                    _run(root, out, est)
                except Crash:
                    faults_injected += 1
            seen = _state(out)
            assert seen is None or same_decomposition(seen, _state(reference))
        _run(root, out, est)
        _check_final(out, reference)
    print(f"\n[fault injection] {n_sequences} crash sequences, {faults_injected} faults, "
          "0 rows lost")


# --------------------------------------------------------------- real kills
CHILD = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from _shard_helpers import toy_estimator
from sksplice.shards import decompose_to_shards, list_image_files

root, out = Path(sys.argv[2]), Path(sys.argv[3])
est = toy_estimator()
images, classes = list_image_files(root)
print("ready", flush=True)
t = time.perf_counter()
decompose_to_shards(images, out, est, labels=classes, root=root, shard_size=2, plots=False)
print("done", time.perf_counter() - t, flush=True)
'''

CACHE_CHILD = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
from _shard_helpers import toy_encoder, toy_words
import sksplice.concepts as concepts
from sksplice import build_dictionary

_write = concepts.atomic_write
def atomic_write(path, write):  # says when the cache entry is being written
    print("writing", flush=True)
    t = time.perf_counter()
    _write(path, write)
    print("wrote", time.perf_counter() - t, flush=True)
concepts.atomic_write = atomic_write

words = toy_words(int(sys.argv[3]))
enc = toy_encoder()
print("ready", flush=True)
t = time.perf_counter()
build_dictionary(enc, words, vocabulary_size=len(words), cache_dir=sys.argv[2])
print("done", time.perf_counter() - t, flush=True)
'''


def _spawn(script, *args):
    env = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg", SKSPLICE_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-c", script, str(TESTS), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_ready(proc):
    line = proc.stdout.readline()
    if not line.startswith("ready"):  # it died first: say why
        proc.wait(timeout=60)
        raise AssertionError(f"the child exited ({proc.returncode}) before it was ready: "
                             f"{line}{proc.stderr.read()}")


def _timed_run(script, *args):
    """(seconds of work, seconds spent writing the cache entry or None)."""
    proc = _spawn(script, *args)
    _wait_ready(proc)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    wrote = [float(ln.split()[1]) for ln in out.splitlines() if ln.startswith("wrote")]
    return float(out.split()[-1]), (wrote[0] if wrote else None)


def _kill_loop(script, args, n_kills, rng, times, after_each=None):
    """Start, wait until ready, kill at a random moment; ``n_kills`` times.

    With a measured write time, every other kill waits for the write to start
    and lands at a random moment inside it.  ``after_each()`` runs after each.
    """
    work_time, write_time = times
    kills = 0
    for i in range(n_kills):
        proc = _spawn(script, *args)
        try:
            _wait_ready(proc)
            if write_time is not None and i % 2:
                line = proc.stdout.readline()
                assert line.startswith("writing"), line
                time.sleep(float(rng.uniform(0, write_time)))
            else:
                time.sleep(float(rng.uniform(0, 1.2 * work_time)))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        if after_each is not None:
            after_each()
    return kills


@pytest.mark.slow
def test_killed_decompositions_resume_to_the_same_result(setup, tmp_path):
    """Episodes on fresh folders: up to 4 runs killed at random moments, then one to the end."""
    root, _, reference = setup
    times = _timed_run(CHILD, root, tmp_path / "timing")
    rng = np.random.default_rng(7)
    n_episodes = 10 if LONG else 1
    kills = 0
    for episode in range(n_episodes):
        out = tmp_path / f"killed-{episode}"
        kills += _kill_loop(CHILD, (root, out), 4, rng, (times[0] * 0.8, None))
        seen = _state(out)
        assert seen is None or same_decomposition(seen, _state(reference))
        _timed_run(CHILD, root, out)
        _check_final(out, reference)
    print(f"\n[fault injection] decompose_to_shards: {n_episodes} folders, {4 * n_episodes} "
          f"runs started, {kills} killed (SIGKILL) before they finished, 0 rows lost")


@pytest.mark.slow
def test_killed_dictionary_cache_writes_never_corrupt_the_cache(tmp_path):
    from _shard_helpers import toy_encoder, toy_words

    from sksplice import build_dictionary

    n_words = 60000
    cache = tmp_path / "cache"
    times = _timed_run(CACHE_CHILD, tmp_path / "timing-cache", n_words)
    rng = np.random.default_rng(11)
    n = 40 if LONG else 4
    words = toy_words(n_words)
    enc = toy_encoder()
    fresh = build_dictionary(enc, words, vocabulary_size=n_words, cache=False)

    def check_then_clear():
        # whatever the kill left, the cache gives the right dictionary ...
        got = build_dictionary(enc, words, vocabulary_size=n_words, cache_dir=cache)
        np.testing.assert_array_equal(got.embeddings, fresh.embeddings)
        assert list(got.names) == words
        again = build_dictionary(enc, words, vocabulary_size=n_words, cache_dir=cache)
        assert again.metadata["cache_hit"]
        np.testing.assert_array_equal(again.embeddings, fresh.embeddings)
        # ... then the entry goes, so the next child writes it again
        for entry in (cache / "dictionaries").glob("*.npz"):
            entry.unlink()

    kills = _kill_loop(CACHE_CHILD, (cache, n_words), n, rng, times, check_then_clear)
    debris = [p.name for p in cache.rglob("*.tmp")]
    print(f"\n[fault injection] build_dictionary cache: {n} runs started, {kills} killed "
          f"(SIGKILL; {n // 2} of them while the entry was being written), 0 entries "
          f"corrupt, {len(debris)} temporary file(s) left by kills")


@pytest.mark.slow
def test_dask_workers_killed_at_random_moments_change_no_code():
    """Issue 20, class 6: SIGKILL a worker at a random moment of a distributed transform."""
    import threading

    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    from conftest import coherent_problem

    from sksplice import ConceptDictionary, SpliceTransformer

    names, E, X, _ = coherent_problem(n_concepts=2000, n_features=128, n_samples=96, seed=5)
    st = SpliceTransformer(l1=0.1, dictionary=ConceptDictionary(names, E), image_mean="fit",
                           solver="sklearn", device="cpu").fit(X)
    expected = st.transform(X)
    rng = np.random.default_rng(20)
    n_runs = 15 if LONG else 3
    kills = lost = 0
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        for _ in range(n_runs):
            try:  # a nanny restarts the killed worker; on a busy machine that can take long
                client.wait_for_workers(2, timeout=120)
            except TimeoutError:
                client.wait_for_workers(1, timeout=120)
            victim = int(rng.choice(sorted(client.run(os.getpid).values())))
            killer = threading.Timer(float(rng.uniform(0, 0.5)), os.kill,
                                     (victim, signal.SIGKILL))
            box = {}
            runner = threading.Thread(target=lambda b=box: b.setdefault(
                "W", st.transform(da.from_array(X, chunks=(8, 128))).compute()), daemon=True)
            killer.start()
            runner.start()
            runner.join(240)
            killer.join()
            assert not runner.is_alive(), "a transform hung after a worker was killed"
            kills += victim not in client.run(os.getpid).values()
            lost += int((box["W"] != expected).nnz)
    finally:
        client.close()
        cluster.close()
    print(f"\n[fault injection] dask transform: {n_runs} runs, {kills} workers killed "
          f"(SIGKILL), {lost} codes changed")
    assert kills >= 1 and lost == 0
