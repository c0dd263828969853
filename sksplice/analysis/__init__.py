"""Concept analysis: explanations, class concept distributions, associations, sweeps, probes.

Every function takes codes (``scipy.sparse`` or dense, shape
``(n_samples, n_concepts)``) plus the concept names (or a fitted estimator,
whose ``get_feature_names_out()`` gives them) and returns plain data:
dataclasses holding numpy arrays and lists, each with ``to_frame()`` for a
pandas DataFrame when pandas is installed (``pip install "sksplice[pandas]"``).

- :func:`explain`: the top concepts of each sample, with L0 and (given
  :func:`reconstruction_cosine`) how well the codes reconstruct it.
- :func:`class_concepts`: mean weight and frequency of every concept per
  class (or group), and the top concepts of each.
- :func:`concept_association`: concepts whose weights differ between groups
  (a label or a protected attribute), with a rank-biserial effect size, a
  permutation p-value that stays valid for sparse, zero-inflated weights and
  Benjamini-Hochberg control over all the concepts tested.
- :func:`sparsity_sweep`: mean L0, reconstruction cosine, cross-validated
  probe accuracy, and the zero-shot accuracy and retrieval precision the
  reconstructions keep, over a grid of ``l1``.
- :func:`probe_concepts` and :func:`concept_permutation_importance`: which
  concepts drive each class of a fitted probe pipeline.

Functions that need embeddings or codes from an estimator use only its
public methods (``embed``, ``decompose_embeddings``, ``transform``,
``inverse_transform``).
"""

from ._association import ConceptAssociation, adjust_pvalues, concept_association
from ._classes import ClassConcepts, class_concepts
from ._explain import Explanation, Explanations, explain, reconstruction_cosine
from ._probe import concept_permutation_importance, probe_concepts
from ._sweep import SparsitySweep, sparsity_sweep

__all__ = [
    "ClassConcepts",
    "ConceptAssociation",
    "Explanation",
    "Explanations",
    "SparsitySweep",
    "adjust_pvalues",
    "class_concepts",
    "concept_association",
    "concept_permutation_importance",
    "explain",
    "probe_concepts",
    "reconstruction_cosine",
    "sparsity_sweep",
]
