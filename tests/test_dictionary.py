import numpy as np
import pytest

from sksplice import ConceptDictionary
from sksplice.dictionary import as_concept_dictionary


def test_rows_are_normalised_and_centred():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(50, 16)) * rng.uniform(0.5, 3, size=(50, 1)) + 3.0
    cd = ConceptDictionary([f"c{i}" for i in range(50)], E)
    np.testing.assert_allclose(np.linalg.norm(cd.embeddings, axis=1), 1.0)
    En = E / np.linalg.norm(E, axis=1, keepdims=True)
    np.testing.assert_allclose(cd.text_mean, En.mean(0))
    expected = En - En.mean(0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(cd.embeddings, expected)


def test_center_false_only_normalises():
    E = np.array([[3.0, 4.0], [0.0, 2.0]])
    cd = ConceptDictionary(["a", "b"], E, center=False)
    np.testing.assert_allclose(cd.embeddings, [[0.6, 0.8], [0.0, 1.0]])


def test_pair_is_accepted():
    cd = as_concept_dictionary((["a", "b", "c"], np.eye(3)))
    assert list(cd.names) == ["a", "b", "c"]
    assert cd.index("b") == 1
    with pytest.raises(KeyError, match="Did you mean 'bb'"):
        ConceptDictionary(["a", "bb", "c"], np.eye(3)).index("b")


@pytest.mark.parametrize(
    "names, E, match",
    [
        (["a", "b"], np.eye(3), "2 names but 3 embedding rows"),
        (["a", "a", "b"], np.eye(3), "duplicate concept names \\['a'\\]"),
        (["a", "b", "c"], np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1.0]]),
         "row\\(s\\) for \\['b'\\] are zero"),
        (["a", "b", "c"], np.array([[1.0, 0, np.nan], [0, 1, 0], [0, 0, 1.0]]), "NaN or inf"),
        (["a", "b", "c"], np.ones(3), "must be 2-D"),
        ("abc", np.eye(3), "not one string"),
        ([1, 2, 3], np.eye(3), "must be strings"),
        ([], np.zeros((0, 3)), "empty"),
    ],
)
def test_bad_dictionaries(names, E, match):
    with pytest.raises(ValueError, match=match):
        ConceptDictionary(names, E)


def test_row_equal_to_vocabulary_mean_is_an_error():
    # two (numerically) identical concepts both equal the vocabulary mean
    with pytest.raises(ValueError, match="equals the mean"):
        ConceptDictionary(["a", "b"], np.array([[1.0, 0.0], [1.0, 1e-12]]))


def test_from_prepared_requires_unit_rows():
    with pytest.raises(ValueError, match="unit-norm"):
        ConceptDictionary.from_prepared(["a"], [[2.0, 0.0]])
    cd = ConceptDictionary.from_prepared(["a", "b"], np.eye(2), text_mean=[0.5, 0.5])
    assert cd.n_concepts == 2 and cd.n_features == 2
