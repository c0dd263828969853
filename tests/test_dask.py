"""Dask: blockwise transforms on a LocalCluster equal in-memory ones, also when a worker dies."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import coherent_problem

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from sksplice import ConceptDictionary, SpliceTransformer  # noqa: E402


class CountingTransformer(SpliceTransformer):
    """Appends a line to ``count_file_`` each time an instance is unpickled."""

    def __setstate__(self, state):
        super().__setstate__(state)
        path = state.get("count_file_")
        if path:
            with open(path, "a") as f:
                f.write(f"{os.getpid()}\n")


class KillOnceTransformer(SpliceTransformer):
    """Its first transform call anywhere kills the worker process running it (SIGKILL)."""

    def transform(self, X):
        marker = getattr(self, "kill_marker_", None)
        if marker and isinstance(X, np.ndarray):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().transform(X)


@pytest.fixture(scope="module")
def problem():
    names, E, X, _ = coherent_problem(n_concepts=60, n_features=16, n_samples=48, seed=3)
    return ConceptDictionary(names, E), X


def _fitted(cls, problem, **kw):
    dictionary, X = problem
    params = dict(l1=0.1, dictionary=dictionary, image_mean="fit", solver="sklearn",
                  device="cpu")
    params.update(kw)
    return cls(**params).fit(X)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _equal_sparse(A, B):
    A, B = sp.csr_matrix(A), sp.csr_matrix(B)
    return A.shape == B.shape and A.dtype == B.dtype and (A != B).nnz == 0


def test_local_scheduler_equals_in_memory(problem):
    import dask

    st = _fitted(SpliceTransformer, problem)
    X = problem[1]
    expected = st.transform(X)
    with dask.config.set(scheduler="threads"):
        W = st.transform(da.from_array(X, chunks=(7, 5)))  # columns get rechunked
        assert W.chunks == ((7, 7, 7, 7, 7, 7, 6), (60,))
        assert isinstance(W._meta, sp.csr_matrix)
        assert _equal_sparse(W.compute(), expected)


@pytest.mark.slow
def test_distributed_equals_in_memory_sparse_and_dense(client, problem):
    client.wait_for_workers(2)
    X = problem[1]
    st = _fitted(SpliceTransformer, problem)
    expected = st.transform(X)
    W = st.transform(da.from_array(X, chunks=(6, 16)))
    assert W.shape == expected.shape and W.dtype == np.float64
    blocks = client.compute(W.to_delayed().ravel().tolist(), sync=True)
    assert all(isinstance(b, sp.csr_matrix) for b in blocks)
    assert _equal_sparse(sp.vstack(blocks), expected)
    assert _equal_sparse(W.compute(), expected)

    # float32 in, float32 out; dense output stays dense
    st32 = _fitted(SpliceTransformer, problem, sparse_output=False)
    X32 = X.astype(np.float32)
    D = st32.transform(da.from_array(X32, chunks=(10, 16)))
    assert isinstance(D._meta, np.ndarray) and D.dtype == np.float32
    np.testing.assert_array_equal(D.compute(), st32.transform(X32))


@pytest.mark.slow
def test_estimator_is_shipped_once_per_worker(client, problem, tmp_path):
    client.wait_for_workers(2)
    X = problem[1]
    st = _fitted(CountingTransformer, problem)
    count_file = tmp_path / "unpickled.txt"
    st.count_file_ = str(count_file)
    W = st.transform(da.from_array(X, chunks=(4, 16)))  # 12 blocks
    # the graph refers to the scattered estimator; no task holds a copy of it
    graph = dict(W.__dask_graph__())
    assert len(graph) == 24  # 12 input blocks + 12 transform tasks, no estimator copies
    assert _equal_sparse(W.compute(), SpliceTransformer.transform(st, X))
    # the scheduler (in this process, for a LocalCluster) holds the task that makes the
    # estimator, so it can recompute it when workers die: that copy is not a worker's
    pids = [p for p in count_file.read_text().split() if p != str(os.getpid())]
    # per worker, not per task: 12 tasks ran, but each worker process unpickled
    # the estimator at most twice (distributed may deserialise the broadcast
    # replica once more when it lands), never once per block
    assert 1 <= len(set(pids)) <= 2, pids
    assert all(pids.count(p) <= 2 for p in set(pids)), pids


@pytest.mark.slow
def test_killed_worker_does_not_change_the_result(client, problem, tmp_path):
    client.wait_for_workers(2)
    X = problem[1]
    st = _fitted(KillOnceTransformer, problem)
    st.kill_marker_ = str(tmp_path / "killed")
    expected = SpliceTransformer.transform(st, X)
    W = st.transform(da.from_array(X, chunks=(6, 16)))
    result = W.compute()
    assert os.path.exists(st.kill_marker_), "no worker was killed"
    killed_pid = int((tmp_path / "killed").read_text())
    assert killed_pid not in client.run(os.getpid).values()
    assert _equal_sparse(result, expected)
    client.wait_for_workers(2, timeout=60)


@pytest.mark.slow
def test_bag_of_rows_and_errors(client, problem):
    import dask.bag as db

    X = problem[1]
    st = _fitted(SpliceTransformer, problem)
    bag = db.from_sequence(list(X), npartitions=3)
    W = st.transform(bag)
    assert np.isnan(W.shape[0]) and W.shape[1] == 60
    assert _equal_sparse(W.compute(), st.transform(X))

    with pytest.raises(ValueError, match="embedding dimension 12 does not match"):
        st.transform(da.zeros((4, 12), chunks=2))
    with pytest.raises(ValueError, match="a Dask array .rows chunked. or a Dask bag"):
        st.transform(__import__("dask").delayed(X))



def test_workers_pick_their_own_device(problem, monkeypatch):
    """device="auto" is resolved where the work runs: on a GPU worker, the GPU."""
    import torch

    from sksplice import _dask, _utils, get_encoder
    from sksplice.encoders import _encoder as encoders  # where an Encoder resolves its device

    encoder = get_encoder("RN50:openai", device="cpu")  # nothing is downloaded here
    st = _fitted(SpliceTransformer, problem, device="auto", encoder=encoder, solver="admm")
    cpu_only = _fitted(SpliceTransformer, problem, device="auto", solver="sklearn")
    assert str(st.solver_.device) == "cpu"

    def on_a_gpu_worker(device):
        return torch.device("cuda") if device in ("auto", "cuda") else torch.device(device)

    monkeypatch.setattr(_utils, "resolve_device", on_a_gpu_worker)
    monkeypatch.setattr(encoders, "resolve_device", on_a_gpu_worker)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # nothing runs on it
    local = _dask.localized(st)
    assert local is not st and _dask.localized(st) is local  # once per worker
    assert str(local.solver_.device) == "cuda" and str(st.solver_.device) == "cpu"
    assert local.encoder.device.type == "cuda" and local.encoder.precision == "fp16"
    assert (local.encoder.model_name, local.encoder.pretrained) == ("RN50", "openai")
    assert local.dictionary_ is st.dictionary_  # the shipped dictionary is shared, not copied

    fixed = _fitted(SpliceTransformer, problem, device="cpu")
    assert _dask.localized(fixed) is fixed  # an explicit device is used as given
    assert str(_dask.localized(cpu_only).solver_.device) == "cpu"  # no GPU solver to pick


# ------------------------------------------------------------- image collections
TINY = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                   "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}
WORDS = ("dog cat car tree house beach sky water road bird flower grass snow city person "
         "boat train chair food red blue green night sun cloud river").split()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A random-weight open_clip model (wrapped, so workers get these weights), images."""
    import json

    import open_clip
    import torch
    from PIL import Image

    from sksplice import Encoder, build_dictionary
    from sksplice.shards import image_transformer

    root = tmp_path_factory.mktemp("dask-images")
    (root / "sksplice-dask-tiny.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(root / "sksplice-dask-tiny.json")
    torch.manual_seed(0)
    model = open_clip.create_model("sksplice-dask-tiny")
    encoder = Encoder.from_model(model, name="sksplice-dask-tiny", device="cpu")
    rng = np.random.default_rng(0)
    rel, labels = [], []
    for cls, n in (("a", 4), ("b", 3)):
        (root / "img" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(
                root / "img" / cls / f"{i}.png")
            rel.append(f"{cls}/{i}.png")
            labels.append(cls)
    (root / "img" / "b" / "zz-broken.png").write_bytes(b"not a png")
    rel.append("b/zz-broken.png")
    labels.append("b")
    dictionary = build_dictionary(encoder, WORDS, vocabulary_size=None, cache=False)
    est = image_transformer(encoder, dictionary, None, l1=0.2, solver="sklearn", device="cpu")
    return {"root": root / "img", "rel": rel, "labels": labels, "est": est,
            "encoder": encoder}


def _single_threaded(fn):
    """Run ``fn`` with one torch thread, as the workers do (same float reductions)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(n)


@pytest.mark.slow
def test_image_shards_on_the_cluster_equal_local_ones(client, images, tmp_path):
    import json

    import dask.bag as db

    from sksplice import decompose_to_shards, load_decomposition

    client.wait_for_workers(2)
    est, root = images["est"], images["root"]
    local = _single_threaded(lambda: decompose_to_shards(
        images["rel"], tmp_path / "local", est, labels=images["labels"], root=root,
        shard_size=3, plots=False))
    expected = load_decomposition(tmp_path / "local")
    assert expected.codes.shape == (7, len(WORDS)) and local["n_decomposed"] == 7

    pairs = list(zip(images["rel"], images["labels"], strict=True))
    bag = db.from_sequence(pairs, partition_size=3)
    manifest = decompose_to_shards(bag, tmp_path / "bag", est, root=root, plots=False)
    assert manifest["n_resumed_shards"] == 0 and len(manifest["shards"]) == 3
    assert [b["image"] for b in manifest["bad_files"]] == ["b/zz-broken.png"]
    got = load_decomposition(tmp_path / "bag")
    assert got.images == expected.images and got.classes == ["a", "b"]
    np.testing.assert_array_equal(got.labels, expected.labels)
    assert _equal_sparse(got.codes, expected.codes)
    np.testing.assert_array_equal(got.cosine, expected.cosine)
    assert (tmp_path / "bag" / "summary.json").read_text() == (
        tmp_path / "local" / "summary.json").read_text()

    # rerun: every shard is already there, nothing is recomputed
    shard1 = tmp_path / "bag" / "shards" / "shard-000001.npz"
    state = shard1.stat().st_mtime_ns
    again = decompose_to_shards(bag, tmp_path / "bag", est, root=root, plots=False)
    assert again["n_resumed_shards"] == 3 and shard1.stat().st_mtime_ns == state

    # an interrupted run (a shard missing, the manifest unfinished) resumes
    (tmp_path / "bag" / "shards" / "shard-000002.npz").unlink()
    manifest = json.loads((tmp_path / "bag" / "manifest.json").read_text())
    manifest.update(complete=False, shards=[], bad_files=[])
    (tmp_path / "bag" / "manifest.json").write_text(json.dumps(manifest))
    resumed = decompose_to_shards(bag, tmp_path / "bag", est, root=root, plots=False)
    assert resumed["n_resumed_shards"] == 2 and shard1.stat().st_mtime_ns == state
    assert _equal_sparse(load_decomposition(tmp_path / "bag").codes, expected.codes)

    # a plain list, one task per shard
    listed = decompose_to_shards(images["rel"], tmp_path / "list", est,
                                 labels=images["labels"], root=root, shard_size=3,
                                 summary=False, dask=True)
    assert listed["shards"] == local["shards"]
    assert _equal_sparse(load_decomposition(tmp_path / "list").codes, expected.codes)


@pytest.mark.slow
def test_transform_of_image_bags(client, images):
    import dask.bag as db

    from sksplice import CLIPEmbedder
    from sksplice._dask import transform_dask

    client.wait_for_workers(2)
    paths = [str(images["root"] / p) for p in images["rel"][:5]]
    st = images["est"].set_params(input="image")
    # one partition is one encoder batch: compare with the same batches in memory
    W = st.transform(db.from_sequence(paths, partition_size=3))
    expected = _single_threaded(lambda: sp.vstack([st.transform(paths[:3]),
                                                   st.transform(paths[3:])]))
    assert _equal_sparse(W.compute(), expected)

    emb = CLIPEmbedder(images["encoder"], device="cpu").fit()
    E = transform_dask(emb, db.from_sequence(paths, partition_size=3))
    assert E.dtype == np.float32 and E.shape[1] == 24
    expected = _single_threaded(lambda: np.vstack([emb.transform(paths[:3]),
                                                   emb.transform(paths[3:])]))
    np.testing.assert_array_equal(E.compute(), expected)


# ------------------------------------------------- whole pipelines (ParallelPostFit)
def _pipeline_problem(problem):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    dictionary, X = problem
    st = _fitted(SpliceTransformer, problem)
    y = np.asarray(st.transform(X).argmax(axis=1)).ravel() % 3  # labels the codes explain
    pipe = make_pipeline(SpliceTransformer(l1=0.1, dictionary=dictionary, image_mean="fit",
                                           solver="sklearn", device="cpu"),
                         LogisticRegression(max_iter=1000))
    return pipe, X, y


def test_parallel_post_fit_runs_a_pipeline_on_dask_arrays(problem):
    import dask
    from sklearn.exceptions import NotFittedError

    from sksplice import ParallelPostFit

    pipe, X, y = _pipeline_problem(problem)
    model = ParallelPostFit(pipe).fit(da.from_array(X, chunks=(10, 16)), da.from_array(y))
    fitted = model.estimator_
    assert fitted is not pipe and not hasattr(pipe[-1], "coef_")  # a clone was fitted
    Xd = da.from_array(X, chunks=(10, 16))
    with dask.config.set(scheduler="threads"):
        labels = model.predict(Xd)
        assert isinstance(labels, da.Array) and labels.chunks == ((10, 10, 10, 10, 8),)
        np.testing.assert_array_equal(labels.compute(), fitted.predict(X))
        proba = model.predict_proba(Xd)
        assert proba.chunks == ((10, 10, 10, 10, 8), (len(fitted.classes_),))
        np.testing.assert_allclose(proba.compute(), fitted.predict_proba(X), rtol=0, atol=0)
        np.testing.assert_array_equal(model.decision_function(Xd).compute(),
                                      fitted.decision_function(X))
        codes = ParallelPostFit(fitted[:-1]).transform(Xd)  # sparse blocks stay sparse
        assert isinstance(codes._meta, sp.csr_matrix)
        assert _equal_sparse(codes.compute(), fitted[:-1].transform(X))
    # in-memory inputs pass straight through; the score is the estimator's
    np.testing.assert_array_equal(model.predict(X), fitted.predict(X))
    assert model.score(Xd, y) == fitted.score(X, y)
    np.testing.assert_array_equal(model.classes_, fitted.classes_)
    assert model.n_features_in_ == 16
    # an already fitted pipeline is used as it is; an unfitted one names the fix
    np.testing.assert_array_equal(ParallelPostFit(fitted).predict(Xd).compute(),
                                  fitted.predict(X))
    with pytest.raises(NotFittedError, match="call fit"):
        ParallelPostFit(pipe).predict(Xd)
    assert not hasattr(ParallelPostFit(fitted[:-1]), "predict")  # only what the estimator has
    with pytest.raises(ValueError, match="2-D Dask array"):
        model.predict(da.from_array(X[0]))
    import dask.bag as db

    with pytest.raises(ValueError, match="takes a Dask array"):
        model.predict(db.from_sequence(list(X), npartitions=2))


@pytest.mark.slow
def test_parallel_post_fit_on_a_local_cluster(client, problem):
    from sksplice import ParallelPostFit

    client.wait_for_workers(2)
    pipe, X, y = _pipeline_problem(problem)
    model = ParallelPostFit(pipe).fit(X, y)
    Xd = da.from_array(X, chunks=(6, 16))
    labels = model.predict(Xd)
    # every block is a task on the cluster's workers
    blocks = client.compute(labels.to_delayed().ravel().tolist(), sync=True)
    assert len(blocks) == 8
    np.testing.assert_array_equal(np.concatenate(blocks), model.estimator_.predict(X))
    np.testing.assert_array_equal(labels.compute(), model.estimator_.predict(X))
    np.testing.assert_allclose(model.predict_proba(Xd).compute(),
                               model.estimator_.predict_proba(X), rtol=0, atol=0)


def test_parallel_post_fit_passes_the_estimator_checks():
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.utils.estimator_checks import check_estimator

    from sksplice import ParallelPostFit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(ParallelPostFit(LogisticRegression()), on_fail=None)
    failed = {r["check_name"]: str(r["exception"])[:200] for r in results
              if r["status"] == "failed"}
    assert len(results) > 30 and failed == {}


def _transform_into(st, X, box):
    box["W"] = st.transform(X).compute()


@pytest.mark.slow
def test_a_worker_killed_while_the_estimator_is_handed_over_changes_nothing(problem):
    # issue 20, class 6: a worker killed during the broadcast scatter of the estimator
    # made transform fail (CommClosedError) or wait forever on the dead worker
    import threading
    import time

    names, E, X, _ = coherent_problem(n_concepts=3000, n_features=256, n_samples=48, seed=3)
    st = _fitted(SpliceTransformer, (ConceptDictionary(names, E), X))
    expected = st.transform(X)
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        client.wait_for_workers(2, timeout=60)
        for attempt in range(4):
            victim = sorted(client.run(os.getpid).values())[attempt % 2]
            killer = threading.Timer(0.02 * attempt, os.kill, (victim, signal.SIGKILL))
            box = {}
            worker = threading.Thread(target=_transform_into, daemon=True,
                                      args=(st, da.from_array(X, chunks=(6, 256)), box))
            killer.start()
            worker.start()
            worker.join(240)
            killer.join()
            assert not worker.is_alive(), f"transform hung after a worker was killed ({attempt})"
            assert _equal_sparse(box["W"], expected)
            assert victim not in client.run(os.getpid).values()
            client.wait_for_workers(2, timeout=60)
            time.sleep(0.5)
    finally:
        client.close()
        cluster.close()
