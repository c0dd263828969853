"""Analysis: explanations, class distributions, association tests (planted and null), sweeps."""

import sys
from itertools import combinations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import coherent_problem
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats

from sksplice import ConceptDictionary, SpliceTransformer
from sksplice.analysis import (
    ClassConcepts,
    adjust_pvalues,
    class_concepts,
    concept_association,
    explain,
    reconstruction_cosine,
    sparsity_sweep,
)

NAMES = ["cat", "dog", "car", "tree"]
W4 = np.array([
    [0.0, 0.5, 0.2, 0.0],
    [0.3, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
    [0.1, 0.1, 0.1, 0.4],
])


# ----------------------------------------------------------------- explanations
def test_explain_lists_top_concepts_by_weight():
    ex = explain(sp.csr_matrix(W4), NAMES, top_k=2, sample_ids=list("abcd"))
    assert len(ex) == 4
    assert ex[0].concepts == ["dog", "car"] and ex[0].weights == [0.5, 0.2]
    assert ex[0].l0 == 2 and ex[0].sample == "a"
    assert ex[3].concepts == ["tree", "cat"]  # ties broken by column order
    assert ex[3].l0 == 4 and "2 more" in str(ex[3])
    assert ex[3].total_weight == pytest.approx(0.7)


def test_explain_zero_row_says_nothing_to_explain():
    ex = explain(W4, NAMES)
    assert ex[2].is_empty and ex[2].l0 == 0 and ex[2].concepts == []
    assert "nothing to explain" in str(ex[2])
    recs = ex.to_records()
    assert [r["concept"] for r in recs if r["sample"] == 2] == [None]


def test_explain_all_zero_codes_raise():
    with pytest.raises(ValueError, match="nothing to explain"):
        explain(np.zeros((3, 4)), NAMES)
    with pytest.raises(ValueError, match="nothing to explain"):
        class_concepts(sp.csr_matrix((3, 4)), NAMES, [0, 1, 1])
    with pytest.raises(ValueError, match="nothing to explain"):
        concept_association(np.zeros((4, 4)), NAMES, [0, 0, 1, 1])


def test_bad_input_messages():
    with pytest.raises(ValueError, match="4 columns but 3 concept names"):
        explain(W4, NAMES[:3])
    with pytest.raises(ValueError, match="labels has 3 entries but codes have 4 rows"):
        class_concepts(W4, NAMES, [0, 1, 1])
    with pytest.raises(ValueError, match="not one\nstring|not one string"):
        explain(W4, "cat")
    with pytest.raises(ValueError, match="2-D"):
        explain(W4[0], NAMES)
    with pytest.raises(ValueError, match="cosine has 2 entries"):
        explain(W4, NAMES, cosine=[1.0, 1.0])
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        explain(W4, NAMES, top_k=0)
    with pytest.raises(ValueError, match="NaN"):
        explain(np.full((2, 4), np.nan), NAMES)


def test_explain_with_reconstruction_cosine_matches_score():
    names, E, X, _ = coherent_problem(n_concepts=30, n_features=10, n_samples=8, seed=2)
    st = SpliceTransformer(l1=0.1, dictionary=ConceptDictionary(names, E), image_mean=None,
                           device="cpu").fit(X)
    codes = st.transform(X)
    cos = reconstruction_cosine(st, X, codes)
    assert cos.shape == (8,)
    assert np.mean(cos) == pytest.approx(st.score(X), abs=1e-10)
    assert_allclose(reconstruction_cosine(st, X), cos)
    ex = explain(codes, st, cosine=cos, top_k=3)  # names from the estimator
    assert ex[0].cosine == pytest.approx(cos[0])
    assert ex[0].concepts[0] in names
    with pytest.raises(ValueError, match="codes have 3 rows but X has 8"):
        reconstruction_cosine(st, X, codes[:3])


def test_to_frame_and_pandas_missing(monkeypatch):
    pd = pytest.importorskip("pandas")
    df = explain(W4, NAMES, top_k=2).to_frame()
    assert list(df.columns) == ["sample", "rank", "concept", "weight", "l0", "cosine"]
    assert len(df) == 2 + 1 + 1 + 2
    dist = class_concepts(W4, NAMES, ["a", "a", "b", "b"])
    f = dist.to_frame(top_k=2)
    assert set(f["class"]) == {"a", "b"} and isinstance(f, pd.DataFrame)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r'pip install "sksplice\[pandas\]"'):
        explain(W4, NAMES).to_frame()
    with pytest.raises(ImportError, match=r"sksplice\[pandas\]"):
        dist.to_frame()


# ----------------------------------------------------------------- class distributions
def test_class_concepts_means_and_frequencies():
    y = np.array(["a", "a", "b", "b"])
    dist = class_concepts(W4, NAMES, y)
    assert isinstance(dist, ClassConcepts)
    assert list(dist.classes) == ["a", "b"]
    assert_array_equal(dist.n_samples, [2, 2])
    assert_allclose(dist.mean_weight, [W4[:2].mean(0), W4[2:].mean(0)])
    assert_allclose(dist.frequency, [(W4[:2] > 0).mean(0), (W4[2:] > 0).mean(0)])
    top = dist.top("a", k=2)
    assert [t["concept"] for t in top] == ["dog", "cat"]
    assert [t["concept"] for t in dist.top("a", k=5, by="frequency")] == ["dog", "cat", "car"]
    assert list(dist.top_k(1)) == ["a", "b"]
    with pytest.raises(ValueError, match="class 'c' is not one of"):
        dist.top("c")
    assert dist.concept("dog") == {"a": {"mean_weight": 0.25, "frequency": 0.5},
                                   "b": {"mean_weight": 0.05, "frequency": 0.5}}
    with pytest.raises(ValueError, match="'dgo' is not in the vocabulary.*Did you mean 'dog'"):
        dist.concept("dgo")


def test_class_with_no_samples_is_an_error():
    with pytest.raises(ValueError, match="class 'zebra' has no samples"):
        class_concepts(W4, NAMES, ["a", "a", "b", "b"], classes=["a", "zebra"])
    dist = class_concepts(W4, NAMES, [0, 0, 1, 2], classes=[2, 0])
    assert list(dist.classes) == [2, 0] and list(dist.n_samples) == [1, 2]


def test_labels_that_print_the_same_are_not_merged():
    """``[1, "1"]`` is two groups to Python but one to numpy's str conversion and to a table."""
    for fn in (class_concepts, concept_association):
        with pytest.raises(ValueError, match=r"distinct values with the same name \(1 and '1'\)"):
            fn(W4, NAMES, [1, 1, "1", "1"])
    with pytest.raises(ValueError, match="same name"):
        concept_association(W4, NAMES, ["a", "a", "b", "b"], groups=[1, "1"])
    # labels of mixed types that print differently stay distinct groups
    dist = class_concepts(W4, NAMES, [1, 1, "b", "b"])
    assert sorted(map(str, dist.classes)) == ["1", "b"] and list(dist.n_samples) == [2, 2]


def test_class_table_refuses_a_repeated_or_reserved_class():
    """A class named like a group the caller adds (e.g. "(all)") must not merge into it."""
    kw = dict(concept_names=np.array(NAMES, dtype=object), n_samples=np.array([2, 2]),
              mean_weight=np.zeros((2, 4)), frequency=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="same name"):
        ClassConcepts(classes=np.array(["(all)", "(all)"], dtype=object), **kw)
    with pytest.raises(ValueError, match="same name"):
        ClassConcepts(classes=np.array([3, "3"], dtype=object), **kw)
    dist = ClassConcepts(classes=np.array(["cats", "(all)"], dtype=object), **kw)
    assert dist.index("(all)") == 1 and dist.index("cats") == 0


# ----------------------------------------------------------------- association
def _zero_inflated(rng, n, k, density=0.15):
    return rng.exponential(size=(n, k)) * (rng.random((n, k)) < density)


def test_planted_association_is_found():
    rng = np.random.default_rng(0)
    n, k = 120, 60
    y = np.repeat(["rest", "group"], [90, 30])
    W = _zero_inflated(rng, n, k)
    W[y == "group", 7] = (rng.exponential(size=30) + 0.5) * (rng.random(30) < 0.7)
    W[y == "group", 11] = 0.0  # planted absence
    names = [f"c{j}" for j in range(k)]
    res = concept_association(W, names, y, groups="group", n_permutations=1999,
                              random_state=0)
    assert res.n_tests == k and len(res) == k
    top = res.top(3)
    assert top[0]["concept"] == "c7" and top[0]["effect"] > 0.4
    assert top[0]["qvalue"] <= 0.05 and top[0]["pvalue"] == pytest.approx(1 / 2000)
    assert res.significant_concepts(group="group") == ["c7"]
    lower = res.top(3, direction="lower", significant=False)
    assert lower[0]["concept"] == "c11"
    assert res.significant.sum() <= 3  # c7 and at most c11; nothing else
    # the asymptotic test agrees on the planted concept
    with pytest.warns(UserWarning, match="anti-conservative"):
        res_a = concept_association(W, names, y, groups="group", test="asymptotic")
    assert res_a.top(1)[0]["concept"] == "c7"


def test_null_false_positive_rate_is_at_the_stated_level():
    """Under the null: raw p <= 0.05 in about 5% of tests, BH discoveries rare."""
    rng = np.random.default_rng(1)
    n, k, reps = 60, 80, 60
    names = [f"c{j}" for j in range(k)]
    pvals, any_discovery = [], 0
    # densities from one nonzero per column up to half the samples
    density = np.r_[np.full(10, 1.5 / n), np.linspace(0.03, 0.5, k - 10)]
    for r in range(reps):
        W = rng.exponential(size=(n, k)) * (rng.random((n, k)) < density)
        y = np.zeros(n, dtype=int)
        y[rng.choice(n, 12, replace=False)] = 1  # unbalanced groups
        res = concept_association(W, names, y, n_permutations=199, random_state=r)
        pvals.append(res.pvalue)
        any_discovery += int(res.significant.any())
    p = np.concatenate(pvals)
    rate = np.mean(p <= 0.05)
    # ~2200 tests: a valid test stays at or below 5% (plus binomial noise)
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / p.size)
    assert rate >= 0.02  # and is not trivially conservative
    # BH at alpha=0.05 under the global null: P(any discovery) <= 0.05 (3 of 60 expected)
    assert any_discovery <= 6


def test_rare_concept_permutation_is_valid_asymptotic_is_not():
    """A concept used once, inside a small group: exact p is n_in / n."""
    n, n_in = 200, 5
    y = np.zeros(n, dtype=int)
    y[:n_in] = 1
    W = np.zeros((n, 2))
    W[0, 0] = 1.0
    W[::3, 1] = 1.0
    res = concept_association(W, ["rare", "common"], y, alternative="greater",
                              n_permutations=4999, random_state=0)
    row = res.top(2, significant=False)
    rare = [r for r in row if r["concept"] == "rare"][0]
    assert rare["pvalue"] == pytest.approx(n_in / n, abs=0.01)
    with pytest.warns(UserWarning, match="anti-conservative"):
        res_a = concept_association(W, ["rare", "common"], y, alternative="greater",
                                    test="asymptotic")
    p_rare = res_a.pvalue[list(res_a.concept).index("rare")]
    assert p_rare < 1e-5  # the normal approximation is badly off here


def test_permutation_matches_exact_enumeration():
    rng = np.random.default_rng(3)
    n = 10
    y = np.array([1] * 4 + [0] * 6)
    w = np.r_[rng.exponential(size=4) + 0.5, np.zeros(3), rng.exponential(size=3) * 0.3]
    W = np.c_[w, rng.exponential(size=n) * (rng.random(n) < 0.5)]
    # exact two-sided permutation p-value of the rank-sum statistic
    ranks = stats.rankdata(w)
    obs = abs(ranks[:4].sum() - 4 * (n + 1) / 2)
    sums = np.array([ranks[list(c)].sum() for c in combinations(range(n), 4)])
    exact = np.mean(np.abs(sums - 4 * (n + 1) / 2) >= obs - 1e-9)
    res = concept_association(W, ["a", "b"], y, groups=1, n_permutations=20000,
                              random_state=0, correction=None)
    p = res.pvalue[list(res.concept).index("a")]
    assert p == pytest.approx(exact, abs=0.01)


def test_asymptotic_matches_scipy_and_effect_is_rank_biserial():
    rng = np.random.default_rng(4)
    n, k = 80, 5
    W = _zero_inflated(rng, n, k, density=0.4)
    y = rng.integers(0, 2, n)
    res = concept_association(W, [f"c{j}" for j in range(k)], y, groups=1, test="asymptotic",
                              correction=None)
    for j in range(k):
        i = list(res.concept).index(f"c{j}")
        ref = stats.mannwhitneyu(W[y == 1, j], W[y == 0, j], method="asymptotic",
                                 use_continuity=True)
        assert res.statistic[i] == pytest.approx(ref.statistic)
        assert res.pvalue[i] == pytest.approx(ref.pvalue, rel=1e-8)
        n1, n2 = (y == 1).sum(), (y == 0).sum()
        assert res.effect[i] == pytest.approx(2 * ref.statistic / (n1 * n2) - 1)
        assert res.mean_in[i] == pytest.approx(W[y == 1, j].mean())
        assert res.freq_out[i] == pytest.approx((W[y == 0, j] > 0).mean())


def test_multiclass_one_vs_rest_and_filters():
    rng = np.random.default_rng(5)
    n, k = 90, 20
    y = np.repeat(["a", "b", "c"], 30)
    W = _zero_inflated(rng, n, k)
    W[:, 19] = 0.0  # never used: not tested
    W[y == "b", 3] += 1.0
    res = concept_association(W, [f"c{j}" for j in range(k)], y, n_permutations=999,
                              random_state=0)
    assert res.groups == ["a", "b", "c"]
    assert res.n_tests == 3 * 19 and "c19" not in set(res.concept)
    assert res.top(1, group="b")[0]["concept"] == "c3"
    with pytest.raises(ValueError, match="pass group="):
        res.top(1)
    with pytest.raises(ValueError, match="group 'd' is not one of"):
        res.top(1, group="d")
    with pytest.raises(ValueError, match="no concept is nonzero in at least min_count"):
        concept_association(W, [f"c{j}" for j in range(k)], y, min_count=200)


def test_association_bad_input():
    y = ["x", "x", "y", "y"]
    with pytest.raises(ValueError, match="group 'z' has no samples"):
        concept_association(W4, NAMES, y, groups="z")
    with pytest.raises(ValueError, match="single value"):
        concept_association(W4, NAMES, ["x"] * 4)
    with pytest.raises(ValueError, match="labels has 5 entries"):
        concept_association(W4, NAMES, y + ["x"])
    with pytest.raises(ValueError, match="test='exact' is not supported"):
        concept_association(W4, NAMES, y, test="exact")
    with pytest.raises(ValueError, match="correction="):
        concept_association(W4, NAMES, y, correction="holm")


def test_pandas_frame_of_association():
    pytest.importorskip("pandas")
    res = concept_association(W4, NAMES, ["x", "x", "y", "y"], n_permutations=99,
                              random_state=0)
    df = res.to_frame()
    assert len(df) == len(res) and {"effect", "pvalue", "qvalue", "significant"} <= set(df)
    assert res.to_records()[0]["group"] == "y"


def test_adjust_pvalues_matches_scipy():
    rng = np.random.default_rng(6)
    p = rng.random(50) ** 3
    assert_allclose(adjust_pvalues(p, "bh"), stats.false_discovery_control(p, method="bh"))
    assert_allclose(adjust_pvalues(p, "by"), stats.false_discovery_control(p, method="by"))
    assert_allclose(adjust_pvalues(p, "bonferroni"), np.minimum(50 * p, 1))
    assert_allclose(adjust_pvalues(p, None), p)


# ----------------------------------------------------------------- sparsity sweep
def test_sparsity_sweep_tradeoff():
    rng = np.random.default_rng(7)
    k, d, n = 30, 40, 60
    names = [f"c{j}" for j in range(k)]
    cd = ConceptDictionary(names, rng.normal(size=(k, d)))
    y = np.repeat([0, 1], n // 2)
    W = _zero_inflated(rng, n, k, density=0.1)
    W[y == 1, 0] += 1.0
    X = W @ cd.embeddings + 0.05 * rng.normal(size=(n, d))
    st = SpliceTransformer(dictionary=cd, image_mean=None, device="cpu")
    from sklearn.linear_model import LogisticRegression

    sweep = sparsity_sweep(st, X, [0.02, 0.2, 2.0, 50.0], y=y, cv=3, dense_baseline=True,
                           probe=LogisticRegression(C=100.0, max_iter=2000))
    assert np.all(np.diff(sweep.mean_l0) <= 0) and sweep.mean_l0[0] > sweep.mean_l0[2]
    assert sweep.cosine[0] > sweep.cosine[2]
    assert sweep.zero_fraction[-1] == 1.0 and sweep.mean_l0[-1] == 0.0  # no crash at all-zero
    assert sweep.accuracy[0] >= 0.85 and sweep.accuracy[-1] == 0.5  # all-zero codes: chance
    assert 0.6 <= sweep.dense_accuracy <= 1.0
    assert sweep.accuracy.shape == (4,) and sweep.scoring == "accuracy"
    st2 = SpliceTransformer(l1=0.2, dictionary=cd, image_mean=None, device="cpu").fit(X)
    assert sweep.cosine[1] == pytest.approx(st2.score(X), abs=1e-8)
    recs = sweep.to_records()
    assert recs[0]["l1"] == 0.02 and "accuracy" in recs[0]
    with pytest.raises(ValueError, match="no parameter 'alpha'"):
        sparsity_sweep(st, X, [0.1], param="alpha")
    with pytest.raises(ValueError, match="l1_grid is empty"):
        sparsity_sweep(st, X, [])
    with pytest.raises(ValueError, match="needs labels"):
        sparsity_sweep(st, X, [0.1], dense_baseline=True)
    with pytest.raises(ValueError, match="y has 3 entries"):
        sparsity_sweep(st, X, [0.1], y=[0, 1, 0])
    assert sparsity_sweep(st, X, [0.1]).accuracy is None
    by_count = sparsity_sweep(st, X, [2, 5], param="n_nonzero")
    assert_allclose(by_count.mean_l0, [2, 5])
    assert_array_equal(by_count.l1, [2, 5])


# ----------------------------------------------------------------- real data
def test_real_data_class_association(lvis, micrographs, clip_image_mean):
    names, E = lvis
    X, labels = micrographs
    tech = np.array([r["technique"] for r in labels])
    keep = np.flatnonzero(np.isin(tech, ["Atomic force microscopy (AFM)",
                                         "Reflected light microscopy"]))[:120]
    st = SpliceTransformer(l1=0.1, dictionary=ConceptDictionary(names, E),
                           image_mean=clip_image_mean, device="cpu").fit(X[keep])
    codes = st.transform(X[keep])
    dist = class_concepts(codes, st, tech[keep])
    assert dist.mean_weight.shape == (2, len(names))
    res = concept_association(codes, st, tech[keep], groups="Atomic force microscopy (AFM)",
                              n_permutations=999, random_state=0)
    assert np.all((res.pvalue > 0) & (res.pvalue <= 1))
    assert np.all(res.qvalue >= res.pvalue - 1e-12)
    ex = explain(codes, st, cosine=reconstruction_cosine(st, X[keep], codes), top_k=5)
    assert all(0 < e.cosine <= 1 for e in ex)
