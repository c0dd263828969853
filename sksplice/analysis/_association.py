"""Concepts whose weights differ between groups: rank tests with multiple-testing control.

Each group is compared with all other samples, concept by concept, with the
Mann-Whitney rank-sum statistic computed on the sparse codes directly (zeros
share one mid-rank).  p-values come from a Monte Carlo permutation test or
the tie-corrected normal approximation, and are adjusted over every test of
the call with :func:`scipy.stats.false_discovery_control` (Benjamini-Hochberg
or Benjamini-Yekutieli) or Bonferroni.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy import stats

from .._utils import suggest
from ._common import (
    as_label_array,
    check_distinct,
    check_k,
    check_labelled_codes,
    equal_mask,
    find_class,
    import_pandas,
    label_key,
    unique_labels,
)

__all__ = ["ConceptAssociation", "adjust_pvalues", "concept_association"]

_TESTS = ("permutation", "asymptotic")
_ALTERNATIVES = ("two-sided", "greater", "less")
_CORRECTIONS = ("bh", "by", "bonferroni", None, "none")


@dataclass
class ConceptAssociation:
    """Concepts ranked by how differently they are used in a group and the rest.

    One row per (group, tested concept), sorted by group, then p-value,
    then decreasing ``|effect|``.

    Each field is a constructor parameter and an attribute of the same name;
    :func:`concept_association` builds it.

    Parameters
    ----------
    group : ndarray of shape (n_rows,)
        The group tested against all other samples.
    concept : ndarray of shape (n_rows,), dtype=object
        The concept tested.
    effect : ndarray of shape (n_rows,)
        Rank-biserial correlation ``2 U / (n_in n_out) - 1`` in [-1, 1]:
        ``P(w_in > w_out) - P(w_in < w_out)`` for a random pair; positive
        means the concept weighs more in the group.
    mean_in, mean_out : ndarray of shape (n_rows,)
        Mean weight inside and outside the group.
    freq_in, freq_out : ndarray of shape (n_rows,)
        Fraction of samples using the concept, inside and outside.
    n_in, n_out : ndarray of shape (n_rows,)
        Group sizes.
    statistic : ndarray of shape (n_rows,)
        Mann-Whitney ``U`` of the group.
    pvalue : ndarray of shape (n_rows,)
        Raw p-value of each test.
    qvalue : ndarray of shape (n_rows,)
        p-value adjusted for all ``n_tests`` tests (see ``correction``).
    significant : ndarray of shape (n_rows,), dtype=bool
        ``qvalue <= alpha``.
    alpha : float, default=0.05
        Level of ``significant``.
    test : {"permutation", "asymptotic"}, default="permutation"
        The test that gave ``pvalue``.
    correction : {"bh", "by", "bonferroni"} or None, default="bh"
        The multiple-testing adjustment of ``qvalue``.
    n_permutations : int or None, default=None
        Permutations of the permutation test (None for the asymptotic one).
    n_tests : int, default=0
        Tests in the family the correction covers (every row).
    groups : list, default=[]
        The groups tested, in the order of the rows.
    """

    group: np.ndarray
    concept: np.ndarray
    effect: np.ndarray
    mean_in: np.ndarray
    mean_out: np.ndarray
    freq_in: np.ndarray
    freq_out: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    statistic: np.ndarray
    pvalue: np.ndarray
    qvalue: np.ndarray
    significant: np.ndarray
    alpha: float = 0.05
    test: str = "permutation"
    correction: str | None = "bh"
    n_permutations: int | None = None
    n_tests: int = 0
    groups: list = field(default_factory=list)

    _COLUMNS = ("group", "concept", "effect", "mean_in", "mean_out", "freq_in", "freq_out",
                "n_in", "n_out", "statistic", "pvalue", "qvalue", "significant")

    def __len__(self):
        return int(self.concept.size)

    def __repr__(self):
        return (f"ConceptAssociation(test={self.test!r}, n_groups={len(self.groups)}, "
                f"n_tests={self.n_tests}, n_significant={int(np.sum(self.significant))})")

    def _repr_html_(self):
        from .._html import NOTEBOOK_ROWS, html_table

        cols = ["group", "concept", "effect", "mean_in", "mean_out", "freq_in", "freq_out",
                "qvalue", "significant"]
        order = np.lexsort((-np.abs(self.effect), self.qvalue))[:NOTEBOOK_ROWS]
        rows = [[str(label_key(self.group[i])), str(self.concept[i]), *(
            float(getattr(self, c)[i]) for c in cols[2:8]), bool(self.significant[i])]
            for i in order]
        caption = (f"ConceptAssociation: {self.test} test, {self.correction or 'no'} "
                   f"correction over {self.n_tests} tests, {int(np.sum(self.significant))} "
                   f"significant at alpha={self.alpha}")
        return html_table(cols, rows, caption=caption, n_total=len(self))

    def _select(self, group, direction, significant):
        if direction not in ("higher", "lower", "both"):
            raise ValueError(
                f"direction={direction!r} is not supported; use 'higher' (more weight in "
                "the group), 'lower' or 'both'."
            )
        mask = np.ones(len(self), dtype=bool)
        if group is not None:
            g = self.groups[find_class(np.asarray(self.groups, dtype=object), group, "group")]
            mask &= np.array([x == g for x in self.group], dtype=bool)
        elif len(self.groups) > 1:
            raise ValueError(
                f"these results cover {len(self.groups)} groups "
                f"{list(map(label_key, self.groups))[:10]}; pass group=... to pick one."
            )
        if direction == "higher":
            mask &= self.effect > 0
        elif direction == "lower":
            mask &= self.effect < 0
        if significant:
            mask &= self.significant
        return np.flatnonzero(mask)

    def top(self, k=10, *, group=None, direction="higher", significant=True):
        """The ``k`` concepts with the largest effect size.

        Parameters
        ----------
        k : int, default=10
            Concepts to return at most.
        group : object, default=None
            Which group (required when several were tested).
        direction : {"higher", "lower", "both"}, default="higher"
            Concepts weighing more in the group, less, or either
            (``|effect|``).
        significant : bool, default=True
            Only concepts with ``qvalue <= alpha``.

        Returns
        -------
        rows : list of dict
            One dict per concept with every column of :meth:`to_records`.
        """
        k = check_k(k, "k")
        idx = self._select(group, direction, significant)
        order = idx[np.lexsort((self.pvalue[idx], -np.abs(self.effect[idx])))][:k]
        return [self._record(i) for i in order]

    def significant_concepts(self, *, group=None, direction="higher"):
        """Names of the significant concepts, by decreasing ``|effect|``.

        Parameters
        ----------
        group : object, default=None
            Which group (required when several were tested).
        direction : {"higher", "lower", "both"}, default="higher"
            Concepts weighing more in the group, less, or either.

        Returns
        -------
        concepts : list of str
            Concepts with ``qvalue <= alpha`` in that direction.
        """
        idx = self._select(group, direction, True)
        order = idx[np.lexsort((self.pvalue[idx], -np.abs(self.effect[idx])))]
        return [str(self.concept[i]) for i in order]

    def _record(self, i):
        rec = {}
        for col in self._COLUMNS:
            v = getattr(self, col)[i]
            rec[col] = label_key(v)
        rec["concept"] = str(rec["concept"])
        return rec

    def to_records(self):
        """Every row as a dict.

        Returns
        -------
        records : list of dict
            One dict per (group, concept), with the columns of :meth:`to_frame`.
        """
        return [self._record(i) for i in range(len(self))]

    def to_frame(self):
        """The results as a table.

        Returns
        -------
        frame : pandas.DataFrame
            One row per (group, concept); columns ``group, concept, effect,
            mean_in, mean_out, freq_in, freq_out, n_in, n_out, statistic,
            pvalue, qvalue, significant``.
        """
        pd = import_pandas()
        return pd.DataFrame({col: getattr(self, col) for col in self._COLUMNS})


def concept_association(codes, concept_names, labels, *, groups=None, test="permutation",
                        alternative="two-sided", n_permutations=9999, correction="bh",
                        alpha=0.05, min_count=1, random_state=None):
    """Rank concepts by how strongly their weights differ between groups.

    For spurious-correlation discovery: given a label or a protected
    attribute, each group is compared with all other samples (one-vs-rest;
    a binary attribute gives one comparison), concept by concept, with the
    Mann-Whitney rank statistic.

    Parameters
    ----------
    codes : {ndarray, sparse matrix} of shape (n_samples, n_concepts)
        Concept weights.
    concept_names : sequence of str of length n_concepts, or fitted estimator
        Column names (an estimator gives its ``get_feature_names_out()``).
    labels : array-like of shape (n_samples,)
        Group of each sample (class label or protected attribute).
    groups : label or list of labels, default=None
        Groups to test against the rest.  Default: for two distinct labels,
        the second of the sorted labels (so one comparison); for more, every
        label (one-vs-rest).
    test : {"permutation", "asymptotic"}, default="permutation"
        ``"permutation"``: Monte Carlo permutation test of the rank-sum
        statistic with ``p = (1 + #{|T*| >= |T|}) / (n_permutations + 1)``.
        It conditions on the observed weights, so it is valid (never
        anti-conservative) at any sample size and any amount of zero
        inflation and ties, e.g. for a concept used by a single image.
        ``"asymptotic"``: the tie-corrected normal approximation of the
        Mann-Whitney test; fast for large data, but anti-conservative when a
        concept is rarely used in the smaller group (a concept used once,
        inside a group of 5 out of 800 samples, gets p ~ 1e-30 instead of the
        exact 0.006), so a warning names how many tested concepts are in that
        regime.
    alternative : {"two-sided", "greater", "less"}, default="two-sided"
        ``"greater"``: weights are larger inside the group.
    n_permutations : int, default=9999
        Permutations for ``test="permutation"``.  The smallest p-value is
        ``1 / (n_permutations + 1)``, so to survive a correction over ``m``
        tests at level ``alpha`` a concept needs ``n_permutations`` of at
        least about ``m / alpha``.
    correction : {"bh", "by", "bonferroni"} or None, default="bh"
        Multiple-testing adjustment over every test of the call (all groups
        and concepts): Benjamini-Hochberg (false discovery rate), its
        Benjamini-Yekutieli variant (valid under any dependence), or
        Bonferroni (family-wise error).
    alpha : float, default=0.05
        Level for ``significant``.
    min_count : int, default=1
        Concepts nonzero in fewer samples (all groups pooled) are not tested
        and not listed.  This filter ignores the labels, so it keeps the
        p-values valid while shrinking the family of tests.
    random_state : int, numpy Generator or None, default=None
        Seed of the permutations.

    Returns
    -------
    association : ConceptAssociation
        One row per (group, tested concept) with effect size, means,
        frequencies, p- and q-values; ``top(k)`` and
        ``significant_concepts()`` give the leading concepts.

    Raises
    ------
    ValueError
        If labels and codes differ in length, there are fewer than two
        distinct labels, a requested group has no samples, or every code is
        zero.

    Notes
    -----
    Concepts are compared on their whole weight distribution, zeros
    included: ranks give every zero the same mid-rank, so a concept that is
    used more often *or* with larger weights in the group both count.  The
    effect size is the rank-biserial correlation (``statistic`` is ``U``).

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.analysis import concept_association
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["indoor", "outdoor"], 40)
    >>> W = rng.exponential(size=(80, 3)) * (rng.random((80, 3)) < 0.2)
    >>> W[40:, 1] += 0.5 * (rng.random(40) < 0.8)   # "sky" is planted in outdoor
    >>> res = concept_association(W, ["chair", "sky", "lamp"], y, random_state=0,
    ...                           n_permutations=999)
    >>> [(r["concept"], r["group"], r["significant"]) for r in res.top(3)]
    [('sky', 'outdoor', True)]
    """
    W, names, y = check_labelled_codes(codes, concept_names, labels)
    correction = _check_options(test, alternative, correction, alpha)
    min_count = check_k(min_count, "min_count")
    if test == "permutation":
        n_permutations = check_k(n_permutations, "n_permutations")
    groups, masks = _resolve_groups(y, groups)
    Wc = W.tocsc()
    counts = np.diff(Wc.indptr)
    tested = np.flatnonzero(counts >= min_count)
    if tested.size == 0:
        raise ValueError(
            f"no concept is nonzero in at least min_count={min_count} samples; lower "
            "min_count or l1."
        )
    ranked = _RankedCodes(Wc[:, tested])
    rng = np.random.default_rng(random_state)
    parts, n_small = [], 0
    for g, m in zip(groups, masks, strict=False):
        part = ranked.compare(m, test, alternative, n_permutations, rng)
        part["group"] = np.array([g] * tested.size, dtype=object)
        part["concept"] = names[tested]
        parts.append(part)
        if test == "asymptotic":
            n_small += _count_sparse_expected(counts[tested], m)
    if n_small:
        warnings.warn(
            f"{n_small} tested concept(s) are expected to be nonzero in fewer than 5 samples "
            "of the smaller group; asymptotic p-values are anti-conservative there (rare "
            "concepts look significant). Use test='permutation' or raise min_count.",
            UserWarning, stacklevel=2,
        )
    cols = _assemble(parts, tested.size, correction, alpha)
    return ConceptAssociation(
        **cols, alpha=float(alpha), test=test, correction=correction,
        n_permutations=n_permutations if test == "permutation" else None,
        n_tests=int(cols["pvalue"].size), groups=groups,
    )


def _check_options(test, alternative, correction, alpha):
    """Validate the test's options; returns the correction with "none" as None."""
    if test not in _TESTS:
        raise ValueError(f"test={test!r} is not supported; use 'permutation' or 'asymptotic'.")
    if alternative not in _ALTERNATIVES:
        raise ValueError(
            f"alternative={alternative!r} is not supported; use 'two-sided', 'greater' or "
            "'less'."
        )
    if correction not in _CORRECTIONS:
        raise ValueError(
            f"correction={correction!r} is not supported; use 'bh', 'by', 'bonferroni' or "
            "None."
        )
    if not (isinstance(alpha, numbers.Real) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}.")
    return None if correction == "none" else correction


def _resolve_groups(y, groups):
    """The groups to test (each against the rest) and their sample masks."""
    present = unique_labels(y)
    if present.size < 2:
        raise ValueError(
            f"labels hold a single value {label_key(present[0])!r}; an association needs "
            "at least two groups to compare."
        )
    if groups is None:
        groups = [present[1]] if present.size == 2 else list(present)
    elif isinstance(groups, (str, np.str_, numbers.Number)) or np.ndim(groups) == 0:
        groups = [groups]
    groups = list(as_label_array(groups))
    check_distinct(groups, "groups")
    masks = []
    for g in groups:
        m = equal_mask(y, g)
        if not np.any(m):
            raise ValueError(
                f"group {label_key(g)!r} has no samples in labels; choose groups among "
                f"{list(map(label_key, present))[:20]}.{suggest(g, [str(p) for p in present])}"
            )
        if np.all(m):
            raise ValueError(
                f"every sample is in group {label_key(g)!r}; there is nothing to compare "
                "it with."
            )
        masks.append(np.asarray(m, dtype=bool))
    return groups, masks


def _count_sparse_expected(counts, mask):
    """Tested concepts expected to be nonzero in fewer than 5 samples of the smaller side."""
    n, n1 = mask.size, int(mask.sum())
    return int(np.sum(counts * min(n1, n - n1) / n < 5))


class _RankedCodes:
    """The tested columns' centred ranks, shared by every group's comparison."""

    def __init__(self, Wt):
        self.W = Wt
        self.n = Wt.shape[0]
        R, self.r0, self.tie_term = _centered_ranks(Wt, self.n)
        self.Rt = R.T.tocsr()  # (n_tested, n)
        self.total = np.asarray(R.sum(axis=0)).ravel()
        self.used = Wt.copy()
        self.used.data[:] = 1.0

    def compare(self, m, test, alternative, n_permutations, rng):
        """Effect size, means, frequencies, ``U`` and p-values of group ``m`` vs the rest."""
        n = self.n
        n1 = int(m.sum())
        n2 = n - n1
        s_obs = self.Rt @ m.astype(np.float64)
        dev_obs = s_obs - n1 / n * self.total
        U = n1 * self.r0 + s_obs - n1 * (n1 + 1) / 2.0
        if test == "permutation":
            p = _permutation_pvalues(self.Rt, m, self.total, dev_obs, n_permutations,
                                     alternative, rng)
        else:
            p = _asymptotic_pvalues(dev_obs, self.tie_term, n, n1, alternative)
        k = self.W.shape[1]
        return dict(
            effect=2.0 * U / (n1 * n2) - 1.0,
            mean_in=np.asarray(self.W[m].mean(axis=0)).ravel(),
            mean_out=np.asarray(self.W[~m].mean(axis=0)).ravel(),
            freq_in=np.asarray(self.used[m].sum(axis=0)).ravel() / n1,
            freq_out=np.asarray(self.used[~m].sum(axis=0)).ravel() / n2,
            n_in=np.full(k, n1), n_out=np.full(k, n2), statistic=U, pvalue=p,
        )


def _assemble(parts, n_tested, correction, alpha):
    """One column per field over every group, q-values, sorted by group, p, -|effect|."""
    keys = ConceptAssociation._COLUMNS[:-2]  # everything but qvalue, significant
    cols = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    cols["group"] = np.asarray(cols["group"], dtype=object)
    cols["concept"] = np.asarray(cols["concept"], dtype=object)
    cols["qvalue"] = adjust_pvalues(cols["pvalue"], correction)
    cols["significant"] = cols["qvalue"] <= alpha
    group_rank = np.repeat(np.arange(len(parts)), n_tested)
    order = np.lexsort((np.arange(group_rank.size), -np.abs(cols["effect"]), cols["pvalue"],
                        group_rank))
    return {k: v[order] for k, v in cols.items()}


def _centered_ranks(Wc, n):
    """Ranks of each column among all ``n`` samples, minus the zeros' mid-rank.

    Returns a CSC matrix with the structure of ``Wc`` (zeros stay implicit,
    nonzeros hold ``rank - r0``), the zeros' mid-rank ``r0`` per column and the
    tie term ``sum(t^3 - t)`` per column (for the asymptotic variance).
    """
    k = Wc.shape[1]
    data = np.empty_like(Wc.data)
    r0 = np.zeros(k)
    tie_term = np.zeros(k)
    for j in range(k):
        a, b = Wc.indptr[j], Wc.indptr[j + 1]
        v = Wc.data[a:b]
        m = v.size
        n0 = n - m
        rv = stats.rankdata(v)
        n_neg = int(np.sum(v < 0))
        ranks = np.where(v > 0, rv + n0, rv)
        r0[j] = n_neg + (n0 + 1) / 2.0 if n0 else 0.0
        data[a:b] = ranks - r0[j]
        _, t = np.unique(v, return_counts=True)
        tie_term[j] = float(np.sum(t.astype(np.float64) ** 3 - t)) + float(n0) ** 3 - n0
    R = sp.csc_matrix((data, Wc.indices.copy(), Wc.indptr.copy()), shape=Wc.shape)
    return R, r0, tie_term


def _permutation_pvalues(Rt, mask, total, dev_obs, n_permutations, alternative, rng,
                         block=512):
    n = mask.size
    n1 = int(mask.sum())
    scale = np.maximum(1.0, np.abs(dev_obs)) * 1e-9
    exceed = np.zeros(dev_obs.size)
    mf = mask.astype(np.float64)
    # bound the (block, n) label matrix and the (n_concepts, block) statistics to ~16M cells
    block = max(1, min(block, 2**24 // max(n, dev_obs.size, 1)))
    done = 0
    while done < n_permutations:
        b = min(block, n_permutations - done)
        P = rng.permuted(np.tile(mf, (b, 1)), axis=1)  # (b, n), n1 ones per row
        dev = np.asarray(Rt @ P.T) - (n1 / n * total)[:, None]  # (k, b)
        if alternative == "two-sided":
            hit = np.abs(dev) >= (np.abs(dev_obs) - scale)[:, None]
        elif alternative == "greater":
            hit = dev >= (dev_obs - scale)[:, None]
        else:
            hit = dev <= (dev_obs + scale)[:, None]
        exceed += hit.sum(axis=1)
        done += b
    return (1.0 + exceed) / (n_permutations + 1.0)


def _asymptotic_pvalues(dev_obs, tie_term, n, n1, alternative):
    n2 = n - n1
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    sd = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        if alternative == "two-sided":
            z = (np.abs(dev_obs) - 0.5) / sd
            p = 2.0 * stats.norm.sf(z)
        elif alternative == "greater":
            p = stats.norm.sf((dev_obs - 0.5) / sd)
        else:
            p = stats.norm.cdf((dev_obs + 0.5) / sd)
    p = np.where(sd > 0, p, 1.0)
    return np.clip(np.nan_to_num(p, nan=1.0), 0.0, 1.0)


def adjust_pvalues(pvalues, method="bh"):
    """Multiple-testing adjusted p-values (q-values).

    Parameters
    ----------
    pvalues : array-like of shape (n_tests,)
        Raw p-values.
    method : {"bh", "by", "bonferroni"} or None, default="bh"
        Benjamini-Hochberg, Benjamini-Yekutieli or Bonferroni; None returns
        the p-values unchanged.

    Returns
    -------
    qvalues : ndarray of shape (n_tests,)
        Reject the tests with ``qvalue <= alpha``.

    Examples
    --------
    >>> from sksplice.analysis import adjust_pvalues
    >>> adjust_pvalues([0.01, 0.04, 0.03, 0.5])
    array([0.04      , 0.05333333, 0.05333333, 0.5       ])
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if method not in ("bh", "by", "bonferroni", None):
        raise ValueError(f"method={method!r} is not supported; use 'bh', 'by' or 'bonferroni'.")
    if method is None or p.size == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * p.size, 1.0)
    return stats.false_discovery_control(p, method=method)
