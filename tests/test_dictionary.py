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


# ------------------------------------------------------------ save / load (.npz)
def test_save_load_round_trip_keeps_everything(tmp_path):
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "car", "naïve café"]  # non-ASCII names survive
    cd = ConceptDictionary(names, rng.normal(size=(4, 6)),
                           metadata={"encoder": "ViT-B-32:openai", "vocabulary": "toy",
                                     "vocabulary_size": 4, "prompt_template": "a {}"})
    path = cd.save(tmp_path / "toy")  # '.npz' is added, as numpy.savez does
    assert path == tmp_path / "toy.npz" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.npz"]  # no temporary left
    back = ConceptDictionary.load(path)
    assert back == cd
    assert back.names.tolist() == names
    np.testing.assert_array_equal(back.embeddings, cd.embeddings)
    np.testing.assert_array_equal(back.text_mean, cd.text_mean)
    assert back.metadata == cd.metadata and back.center is True
    with np.load(path, allow_pickle=False) as npz:  # a plain archive, no pickles
        assert str(npz["format"]) == "sksplice.ConceptDictionary" and int(npz["version"]) == 1
        assert npz["names"].dtype.kind == "U"
    prepared = ConceptDictionary.from_prepared(["a", "b"], np.eye(2), text_mean=[0.5, 0.5])
    again = ConceptDictionary.load(prepared.save(tmp_path / "p.npz"))
    assert again.center is None and again.text_mean.tolist() == [0.5, 0.5]


def test_saved_real_dictionary_gives_the_same_codes(lvis, micrographs, clip_image_mean, tmp_path):
    from sksplice import SpliceTransformer

    names, E = lvis
    X, _ = micrographs
    cd = ConceptDictionary(names, E, metadata={"encoder": "ViT-B-32:openai"})
    back = ConceptDictionary.load(cd.save(tmp_path / "lvis.npz"))
    codes = [SpliceTransformer(dictionary=d, image_mean=clip_image_mean, input="embedding",
                               device="cpu").fit(None).decompose_embeddings(X[:8])[0]
             for d in (cd, back)]
    import scipy.sparse as sp

    first, second = (sp.csr_matrix(c).toarray() for c in codes)
    assert np.count_nonzero(first) > 0
    np.testing.assert_array_equal(first, second)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_load_refuses_bad_files_naming_the_fix(tmp_path):
    good = ConceptDictionary(["a", "b", "c"], np.eye(3)).save(tmp_path / "good.npz")
    with np.load(good) as npz:
        fields = {k: npz[k] for k in npz.files}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ConceptDictionary.load(tmp_path / "missing.npz")
    np.save(tmp_path / "one.npy", np.eye(3))
    with pytest.raises(ValueError, match="one array"):
        ConceptDictionary.load(tmp_path / "one.npy")
    (tmp_path / "text.npz").write_text("not a zip archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        ConceptDictionary.load(tmp_path / "text.npz")
    with pytest.raises(ValueError, match="not a regular file"):
        ConceptDictionary.load(tmp_path)
    with pytest.raises(ValueError, match="not a saved ConceptDictionary.*ConceptDictionary.save"):
        ConceptDictionary.load(_write(tmp_path / "other.npz", a=np.eye(2)))
    pickled = dict(fields, metadata=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        ConceptDictionary.load(_write(tmp_path / "pickled.npz", **pickled))
    newer = dict(fields, version=np.array(99))
    with pytest.raises(ValueError, match="version 99.*upgrade sksplice"):
        ConceptDictionary.load(_write(tmp_path / "newer.npz", **newer))
    lacking = {k: v for k, v in fields.items() if k != "text_mean"}
    with pytest.raises(ValueError, match="lacks \\['text_mean'\\].*save the dictionary again"):
        ConceptDictionary.load(_write(tmp_path / "lacking.npz", **lacking))
    scaled = dict(fields, embeddings=2 * fields["embeddings"])
    with pytest.raises(ValueError, match="is damaged.*unit-norm"):
        ConceptDictionary.load(_write(tmp_path / "scaled.npz", **scaled))
    bad_json = dict(fields, metadata=np.array("{not json"))
    with pytest.raises(ValueError, match="not valid JSON"):
        ConceptDictionary.load(_write(tmp_path / "json.npz", **bad_json))
    short_mean = dict(fields, text_mean=np.zeros(2))
    with pytest.raises(ValueError, match="'text_mean' must hold 3"):
        ConceptDictionary.load(_write(tmp_path / "mean.npz", **short_mean))
