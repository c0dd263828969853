"""Target sparsity (``n_nonzero``): per-sample l1 from the nonnegative lasso path."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import coherent_problem
from sklearn.base import clone
from sklearn.linear_model import lars_path

from sksplice import ConceptDictionary, SpliceTransformer, splice_encode
from sksplice.solvers import ActiveSetSolver, solve_n_nonzero


def _problem(seed=0, **kw):
    names, E, X, W = coherent_problem(seed=seed, **kw)
    cd = ConceptDictionary(names, E)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    return cd, Z


def _lars_interval(C, z, n_nonzero):
    """The first l1 interval with ``n_nonzero`` nonzeros, from sklearn's LARS path."""
    d = C.shape[1]
    alphas, _, coefs = lars_path(C.T, z, method="lasso", positive=True, alpha_min=0.0)
    for i in range(len(alphas) - 1):
        mid = 0.5 * (coefs[:, i] + coefs[:, i + 1])
        if np.count_nonzero(mid > 1e-12) == n_nonzero and alphas[i] > alphas[i + 1]:
            # LARS's alpha is the largest correlation / n_samples: l1 = 2 d alpha
            return 2 * d * alphas[i + 1], 2 * d * alphas[i]
    raise AssertionError("the LARS path never has that many nonzeros")


@pytest.mark.parametrize("n_nonzero", [1, 3, 6])
def test_l1_is_the_midpoint_of_the_lars_interval(n_nonzero):
    cd, Z = _problem(n_concepts=80, n_features=30, n_samples=8, n_active=5, seed=1)
    C = cd.embeddings
    res = solve_n_nonzero(C, Z, n_nonzero, device="cpu")
    assert np.all((res.codes > 0).sum(axis=1) == n_nonzero)
    for i, z in enumerate(Z):
        lo, hi = _lars_interval(C, z, n_nonzero)
        assert res.extra["l1"][i] == pytest.approx(0.5 * (lo + hi), rel=1e-8)


def test_real_data_exact_counts(lvis, imagenet_text):
    names, E = lvis
    cd = ConceptDictionary(names, E)
    X = imagenet_text[1][::25]  # 40 ImageNet classes
    Z = X / np.linalg.norm(X, axis=1, keepdims=True) - cd.text_mean
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    l1s = []
    for k in (1, 5, 12):
        res = solve_n_nonzero(cd.embeddings, Z, k, device="cpu")
        assert np.all((res.codes > 0).sum(axis=1) == k)
        assert res.converged.all() and np.all(res.gap <= 1e-6)
        # the path's support is exact: the final solve needs a single round
        assert np.all(res.n_iter == 1)
        # the codes are the plain solution at each sample's l1
        for i in (0, 17, 39):
            plain = ActiveSetSolver(device="cpu").solve(cd.embeddings, Z[i : i + 1],
                                                         float(res.extra["l1"][i]))
            np.testing.assert_allclose(plain.codes[0], res.codes[i], atol=1e-10)
        l1s.append(res.extra["l1"])
    # more concepts need a smaller penalty
    assert np.all(l1s[0] > l1s[1]) and np.all(l1s[1] > l1s[2])


def test_other_solvers_give_the_same_codes():
    cd, Z = _problem(n_concepts=150, n_features=32, n_samples=6, seed=2)
    C = cd.embeddings
    ref = solve_n_nonzero(C, Z, 4, device="cpu")
    res = solve_n_nonzero(C, Z, 4, solver="sklearn", tol=1e-10, max_iter=100000)
    np.testing.assert_allclose(res.extra["l1"], ref.extra["l1"])
    assert np.all((res.codes > 0).sum(axis=1) == 4)
    np.testing.assert_allclose(res.codes, ref.codes, atol=1e-7)
    np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-8)
    assert res.solver == "sklearn"
    # a solver instance is used as given
    inst = solve_n_nonzero(C, Z, 4, solver=ActiveSetSolver(device="cpu", batch_size=2))
    np.testing.assert_allclose(inst.codes, ref.codes, atol=1e-12)


def test_unreachable_sizes_and_zero_rows():
    # with 6 features the path never has more than 6 nonzeros
    cd, Z = _problem(n_concepts=40, n_features=6, n_samples=4, n_active=2, seed=3)
    Z[1] = -cd.embeddings.sum(axis=0)  # no concept correlates positively ...
    Z[1] /= np.linalg.norm(Z[1])
    if np.max(cd.embeddings @ Z[1]) > 0:  # ... by construction, unless
        Z[1] = 0.0  # the dictionary is degenerate; then a zero row
    Z[2] = 0.0
    res = solve_n_nonzero(cd.embeddings, Z, 12, device="cpu")
    nnz = (res.codes > 0).sum(axis=1)
    assert np.all(nnz[[0, 3]] <= 6) and np.all(nnz[[0, 3]] >= 1)
    assert nnz[1] == 0 and nnz[2] == 0
    assert res.extra["l1"][1] == 0 and res.extra["l1"][2] == 0
    assert np.all(np.isfinite(res.objective)) and res.converged.all()


@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_bad_n_nonzero(bad):
    cd, Z = _problem(n_concepts=20, n_features=6, n_samples=2)
    with pytest.raises(ValueError, match="n_nonzero must be a positive integer"):
        solve_n_nonzero(cd.embeddings, Z, bad, device="cpu")


def test_more_than_the_dictionary():
    cd, Z = _problem(n_concepts=20, n_features=6, n_samples=2)
    with pytest.raises(ValueError, match="exceeds the number of concepts"):
        solve_n_nonzero(cd.embeddings, Z, 21, device="cpu")


def test_transformer_n_nonzero():
    names, E, X, _ = coherent_problem(n_concepts=120, n_features=24, n_samples=20, seed=4)
    st = SpliceTransformer(n_nonzero=5, l1=123.0, dictionary=ConceptDictionary(names, E),
                           image_mean="fit", device="cpu")
    W = st.fit_transform(X)
    assert sp.isspmatrix_csr(W)
    assert np.all(np.diff(W.indptr) == 5)  # l1=123 is ignored
    codes, info = st.decompose(X)
    assert info.extra["l1"].shape == (20,) and np.all(info.extra["l1"] > 0)
    assert clone(st).get_params()["n_nonzero"] == 5
    W2 = splice_encode(X, ConceptDictionary(names, E), image_mean=st.image_mean_, n_nonzero=5,
                       device="cpu")
    # splice_encode returns the exact weights, as decompose does (transform may rescale)
    np.testing.assert_allclose(W2.toarray(), codes.toarray(), atol=1e-12)
    with pytest.raises(ValueError, match="n_nonzero"):
        SpliceTransformer(n_nonzero=0, dictionary=ConceptDictionary(names, E)).fit(X)
