"""Array API mode: with dense codes and ``array_api_dispatch=True``, torch stays torch.

scikit-learn's own Array API estimator checks run over every namespace, device
and dtype the installed libraries offer (torch on the CPU, array-api-strict;
CUDA where a GPU exists), and a whole torch pipeline fits and predicts
without leaving torch.

scikit-learn's dispatch needs ``SCIPY_ARRAY_API=1`` set before scipy is first
imported, so these tests run in-process only under it (as in scikit-learn's
own CI); otherwise ``test_the_array_api_tests_pass_under_scipy_array_api``
runs this file in a subprocess with it set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._array_api import yield_namespace_device_dtype_combinations
from sklearn.utils.estimator_checks import check_array_api_input, estimator_checks_generator

from sksplice import ConceptDictionary, SpliceTransformer

torch = pytest.importorskip("torch")

ENABLED = os.environ.get("SCIPY_ARRAY_API") == "1"
needs_dispatch = pytest.mark.skipif(
    not ENABLED, reason="SCIPY_ARRAY_API=1 is not set (run in a subprocess below)")


@pytest.mark.slow
@pytest.mark.skipif(ENABLED, reason="already running under SCIPY_ARRAY_API=1")
def test_the_array_api_tests_pass_under_scipy_array_api():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SCIPY_ARRAY_API": "1",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:randomly", "-p",
         "no:cacheprovider", "-m", "not slow"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout


def _transformer(dim=10, **kw):
    rng = np.random.default_rng(dim)
    E = rng.normal(size=(12, dim))
    kw.setdefault("image_mean", "fit")
    return SpliceTransformer(l1=0.1, dictionary=ConceptDictionary([f"c{i}" for i in range(12)], E),
                             device="cpu", sparse_output=False, **kw)


def test_the_tag_follows_sparse_output():  # no dispatch needed
    assert _transformer().__sklearn_tags__().array_api_support
    assert not _transformer().set_params(sparse_output=True).__sklearn_tags__().array_api_support


@needs_dispatch
@pytest.mark.parametrize("image_mean", ["fit", None])
@pytest.mark.parametrize(("namespace", "device", "dtype"),
                         list(yield_namespace_device_dtype_combinations()))
def test_sklearn_array_api_checks(namespace, device, dtype, image_mean):
    from sklearn.utils._testing import SkipTest

    if namespace == "torch" and device in ("cuda", "mps") and not (
            torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()):
        pytest.skip(f"torch has no usable {device} device here")
    try:
        check_array_api_input("SpliceTransformer", _transformer(image_mean=image_mean),
                              array_namespace=namespace, device_name=device, dtype_name=dtype)
    except SkipTest as exc:  # a namespace or device this machine lacks
        pytest.skip(str(exc))


def _device_usable(namespace, device):
    if namespace != "torch" or device not in ("cuda", "mps"):
        return True
    return torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()


#: scikit-learn's Array API checks that expect what SpliceTransformer does not do, and why
ARRAY_API_EXPECTED_FAILURES = {
    "check_array_api_same_namespace": (
        "a fitted SpliceTransformer serves every namespace: its state is the concept "
        "dictionary, and the codes follow the namespace of the input given to transform "
        "(fit on numpy, transform torch batches); it does not raise when that differs "
        "from fit's"
    ),
}


def _other_array_api_checks():
    """The Array API checks of scikit-learn's estimator checks, but check_array_api_input.

    ``check_array_api_input`` is run (with skips named per device) above.
    """
    out = []
    for image_mean in ("fit", None):
        for estimator, check in estimator_checks_generator(
                _transformer(image_mean=image_mean), legacy=True):
            name = getattr(check, "func", check).__name__
            if not name.startswith("check_array_api") or name == "check_array_api_input":
                continue
            keywords = getattr(check, "keywords", {})
            label = "-".join(f"{v.xp}:{v.device}" if hasattr(v, "xp") else str(v)
                             for v in keywords.values())
            out.append(pytest.param(estimator, check, name, id=f"{name}-{label}-{image_mean}"))
    return out


@needs_dispatch
@pytest.mark.parametrize(("estimator", "check", "name"), _other_array_api_checks())
def test_sklearn_mixed_and_same_namespace_array_api_checks(estimator, check, name):
    from sklearn.utils._testing import SkipTest

    for value in getattr(check, "keywords", {}).values():
        if hasattr(value, "xp") and not _device_usable(value.xp, value.device):
            pytest.skip(f"{value.xp} has no usable {value.device} device here")
    if name in ARRAY_API_EXPECTED_FAILURES:
        with pytest.raises(AssertionError, match="did not raise"):
            check(estimator)
        return
    try:
        check(estimator)
    except SkipTest as exc:  # a namespace or device this machine lacks
        pytest.skip(str(exc))


def test_the_estimator_checks_include_array_api_checks():  # no dispatch needed
    names = {p.values[2] for p in _other_array_api_checks()}
    assert {"check_array_api_mixed_inputs", "check_array_api_same_namespace"} <= names


@needs_dispatch
def test_torch_in_torch_out_same_values_as_numpy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 10))
    est = _transformer().fit(X)
    expected = est.transform(X)
    Xt = torch.from_numpy(X)
    with sklearn.config_context(array_api_dispatch=True):
        got = est.transform(Xt)
        back = est.inverse_transform(got)
    assert isinstance(got, torch.Tensor) and got.device == Xt.device
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), est.inverse_transform(expected), atol=1e-12)


@needs_dispatch
def test_sparse_output_and_no_dispatch_stay_numpy():
    X = np.random.default_rng(1).normal(size=(5, 10))
    est = _transformer().fit(X)
    Xt = torch.from_numpy(X)
    assert isinstance(est.transform(Xt), np.ndarray)  # dispatch off: numpy, as before
    with sklearn.config_context(array_api_dispatch=True):
        codes = est.set_params(sparse_output=True).transform(Xt)
    assert hasattr(codes, "tocsr")  # CSR codes stay scipy


@needs_dispatch
def test_a_torch_pipeline_fits_and_predicts_in_torch():
    rng = np.random.default_rng(2)
    E = rng.normal(size=(12, 10))
    X = np.concatenate([E[[0, 1, 2]] + 0.05 * rng.normal(size=(3, 10)) for _ in range(10)])
    y = np.tile([0, 1, 2], 10)
    Xt, yt = torch.from_numpy(X).float(), torch.from_numpy(y)
    pipe = make_pipeline(
        SpliceTransformer(l1=0.05, dictionary=ConceptDictionary([f"c{i}" for i in range(12)], E),
                          image_mean=None, device="cpu", sparse_output=False),
        StandardScaler(), LogisticRegression(solver="lbfgs"),
    )
    with sklearn.config_context(array_api_dispatch=True):
        pipe.fit(Xt, yt)
        pred = pipe.predict(Xt)
        proba = pipe.predict_proba(Xt)
        features = pipe[:-1].transform(Xt)
    assert isinstance(pred, torch.Tensor) and isinstance(proba, torch.Tensor)
    assert isinstance(features, torch.Tensor) and features.dtype == torch.float32
    assert isinstance(pipe[-1].coef_, torch.Tensor)
    assert (pred == yt).float().mean() > 0.9


@needs_dispatch
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_input_gives_cuda_output():
    X = np.random.default_rng(3).normal(size=(6, 10)).astype(np.float32)
    est = _transformer(device="auto").fit(X)
    Xc = torch.from_numpy(X).cuda()
    with sklearn.config_context(array_api_dispatch=True):
        got = est.transform(Xc)
    assert got.device.type == "cuda"
    np.testing.assert_allclose(got.cpu().numpy(), est.transform(X), rtol=1e-4, atol=1e-5)
