"""What X may be: lists, numpy, pandas and polars frames and series, torch tensors.

Every container is read row by row and gives the same codes as the plain numpy
array (or list) it holds; odd containers get an error naming the row and the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _clip_helpers import TINY

from sksplice import SpliceTransformer, get_encoder
from sksplice._inputs import as_rows, guess_kind

pd = pytest.importorskip("pandas")

VOCAB = ["dog", "cat", "red car", "sunset", "mountain", "beach", "city street", "forest",
         "snow", "people"]


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(30, 16))
    X = E[:6] + 0.2 * rng.normal(size=(6, 16))
    st = SpliceTransformer(l1=0.1, dictionary=([f"c{i}" for i in range(30)], E),
                           image_mean=None, device="cpu").fit(X)
    return st, X


@pytest.fixture
def encoder_spec(tiny_checkpoint, offline_sandbox):
    return (TINY, str(tiny_checkpoint))


def _text_st(encoder_spec, **kw):
    return SpliceTransformer(l1=0.05, encoder=encoder_spec, vocabulary=VOCAB, device="cpu",
                             input="text", **kw)


# ---------------------------------------------------------------- embeddings
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_torch_tensors_give_the_numpy_codes(problem, dtype, requires_grad):
    torch = pytest.importorskip("torch")
    st, X = problem
    T = torch.as_tensor(X).to(getattr(torch, dtype))
    if requires_grad:
        T.requires_grad_(True)
    # numpy of the same values: what a user would pass without torch
    ref = T.detach().to(torch.float32 if dtype == "bfloat16" else T.dtype).numpy()
    W = st.transform(T)
    assert W.shape == (6, 30)
    np.testing.assert_array_equal(W.toarray(), st.transform(ref).toarray())
    codes, _ = st.decompose_embeddings(T)
    np.testing.assert_array_equal(codes.toarray(), st.decompose(ref)[0].toarray())


def test_torch_cuda_tensors_are_moved_to_the_cpu(problem):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    st, X = problem
    T = torch.as_tensor(X, device="cuda").requires_grad_(True)
    np.testing.assert_array_equal(st.transform(T).toarray(), st.transform(X).toarray())


def test_dataframe_of_embedding_columns(problem):
    st, X = problem
    df = pd.DataFrame(X, columns=[f"d{i}" for i in range(16)])
    W = SpliceTransformer(**st.get_params()).fit(df).transform(df)
    np.testing.assert_array_equal(W.toarray(), st.transform(X).toarray())


@pytest.mark.parametrize("container", ["pandas_series", "pandas_frame", "polars_series",
                                       "polars_frame", "list", "object_array"])
def test_a_column_of_per_row_arrays_is_read_row_by_row(problem, container):
    st, X = problem
    cells = [row for row in X]
    if container.startswith("polars"):
        pl = pytest.importorskip("polars")
        col = pl.Series("emb", [row.tolist() for row in X])
        data = col if container == "polars_series" else pl.DataFrame({"emb": col})
    elif container == "pandas_series":
        data = pd.Series(cells, name="emb")
    elif container == "pandas_frame":
        data = pd.DataFrame({"emb": cells})
    elif container == "list":
        data = cells
    else:
        data = np.empty(len(cells), dtype=object)
        data[:] = cells
    W = st.transform(data)
    assert W.shape == (6, 30)
    np.testing.assert_allclose(W.toarray(), st.transform(X).toarray(), atol=1e-12)


def test_per_row_arrays_of_different_lengths_are_named(problem):
    st, X = problem
    with pytest.raises(ValueError, match="different lengths"):
        st.transform(pd.Series([X[0], X[1][:5]]))


# ---------------------------------------------------------------- texts, paths
@pytest.mark.parametrize("container", ["pandas_frame", "pandas_series", "polars_frame",
                                       "polars_series", "numpy", "numpy_column"])
def test_a_column_of_texts_gives_one_row_per_text(encoder_spec, container):
    texts = ["dog", "red car", "snow", "a beach at sunset"]
    if container.startswith("polars"):
        pl = pytest.importorskip("polars")
        s = pl.Series("caption", texts)
        X = s if container == "polars_series" else pl.DataFrame({"caption": s})
    elif container == "pandas_frame":
        X = pd.DataFrame({"caption": texts})
    elif container == "pandas_series":
        X = pd.Series(texts, name="caption")
    elif container == "numpy":
        X = np.asarray(texts)
    else:
        X = np.asarray(texts, dtype=object)[:, None]
    st = _text_st(encoder_spec).fit(X)
    W = st.transform(X)
    # one row per caption (a DataFrame used to give 1 row: its column name)
    assert W.shape == (4, len(VOCAB))
    np.testing.assert_allclose(W.toarray(), st.transform(texts).toarray(), atol=1e-5)


@pytest.mark.parametrize("container", ["pandas_frame", "pandas_series", "polars_frame",
                                       "numpy", "numpy_object", "list_of_paths"])
def test_a_column_of_image_paths_with_input_auto(encoder_spec, image_files, container):
    paths, _ = image_files
    strs = [str(p) for p in paths]
    if container == "polars_frame":
        pl = pytest.importorskip("polars")
        X = pl.DataFrame({"path": strs})
    else:
        X = {"pandas_frame": lambda: pd.DataFrame({"path": strs}),
             "pandas_series": lambda: pd.Series(strs, name="path"),
             "numpy": lambda: np.asarray(strs),
             "numpy_object": lambda: np.asarray(paths, dtype=object),
             "list_of_paths": lambda: list(paths)}[container]()
    st = SpliceTransformer(l1=0.05, encoder=encoder_spec, vocabulary=VOCAB, device="cpu",
                           image_mean=None)
    W = st.fit_transform(X)
    assert st.input_kind_ == "image"
    assert W.shape == (len(paths), len(VOCAB))
    np.testing.assert_allclose(W.toarray(), st.transform(strs).toarray(), atol=1e-5)


def test_wrong_row_count_from_an_encoder_is_an_error(encoder_spec, monkeypatch):
    """An encoder that returns one row for a 4-row column must not pass silently."""
    from sksplice import Encoder

    st = _text_st(encoder_spec).fit(["dog", "cat"])
    original = Encoder.encode_texts

    def one_row(self, texts, *a, **k):
        return original(self, texts[:1], *a, **k)

    monkeypatch.setattr(Encoder, "encode_texts", one_row)
    with pytest.raises(ValueError, match="returned 1 embeddings for 4 text rows"):
        st.transform(pd.DataFrame({"caption": ["a", "b", "c", "d"]}))


# ---------------------------------------------------------------- odd containers
def test_an_embedding_row_before_a_path_is_named(problem, image_files):
    paths, _ = image_files
    st, X = problem
    with pytest.raises(ValueError, match=r"mixes input kinds: X\[0\] is an array .* X\[1\]"):
        st.transform([X[0], str(paths[0])])
    with pytest.raises(ValueError, match=r"X\[1\]='not an image' is not an image file"):
        guess_kind([str(paths[0]), "not an image"])


def test_float_image_arrays_are_named(problem):
    st, _ = problem
    img = np.random.default_rng(0).random((2, 8, 8, 3))
    with pytest.raises(ValueError, match="images must be uint8"):
        st.transform(img)
    with pytest.raises(ValueError, match=r"X\[0\] is a float array .* uint8"):
        st.transform([img[0], img[1]])


def test_strings_that_are_not_images_ask_for_input_text(problem):
    st, _ = problem
    with pytest.raises(ValueError, match="input='text'"):
        st.transform(pd.Series(["a dog", "a cat"]))


def test_as_rows_shapes():
    assert as_rows("a.png") == ["a.png"]
    assert as_rows(pd.DataFrame({"p": ["a.png", "b.png"]})) == ["a.png", "b.png"]
    assert as_rows(np.asarray([["a"], ["b"]])) == ["a", "b"]
    assert as_rows(pd.DataFrame(np.ones((3, 4)))).shape == (3, 4)


# ---------------------------------------------------------------- outputs
def test_set_output_pandas_gives_a_sparse_frame_named_by_concept(problem):
    st, X = problem
    W = st.transform(X)
    st.set_output(transform="pandas")
    try:
        df = st.transform(pd.DataFrame(X, index=[f"r{i}" for i in range(6)]).to_numpy())
        assert isinstance(df, pd.DataFrame)
        assert list(df.columns) == list(st.get_feature_names_out())
        assert all(isinstance(t, pd.SparseDtype) for t in df.dtypes)
        np.testing.assert_allclose(df.sparse.to_coo().toarray(), W.toarray())
        series = pd.Series(list(X), index=[f"r{i}" for i in range(6)])
        assert list(st.transform(series).index) == list(series.index)
    finally:
        st.set_output(transform="default")
    assert sp.issparse(st.transform(X))


def test_global_pandas_output_keeps_the_probe_pipeline_working(problem):
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    st, X = problem
    y = np.array([0, 1, 0, 1, 0, 1])
    with sklearn.config_context(transform_output="pandas"):
        pipe = make_pipeline(SpliceTransformer(**st.get_params()),
                             LogisticRegression()).fit(X, y)
        assert pipe.predict(X).shape == (6,)
        assert isinstance(pipe[:-1].transform(X), pd.DataFrame)
    dense = SpliceTransformer(**{**st.get_params(), "sparse_output": False})
    with sklearn.config_context(transform_output="polars"):
        pytest.importorskip("polars")
        assert dense.fit_transform(X).shape == (6, 30)
        with pytest.raises(ValueError, match="sparse_output=False"):
            SpliceTransformer(**st.get_params()).fit_transform(X)


@pytest.mark.slow
def test_column_transformer_with_paths_numbers_and_categories(encoder_spec, image_files):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    paths, _ = image_files
    paths = paths * 2
    df = pd.DataFrame({
        "path": [str(p) for p in paths],
        "magnification": np.linspace(1, 100, len(paths)),
        "lab": ["a", "b"] * (len(paths) // 2),
    })
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0])
    ct = ColumnTransformer([
        ("splice", SpliceTransformer(l1=0.05, encoder=encoder_spec, vocabulary=VOCAB,
                                     device="cpu", image_mean=None), "path"),
        ("num", StandardScaler(), ["magnification"]),
        ("cat", OneHotEncoder(), ["lab"]),
    ])
    pipe = make_pipeline(ct, LogisticRegression()).fit(df, y)
    assert pipe.predict(df).shape == (len(paths),)
    names = pipe[0].get_feature_names_out().tolist()
    assert names[: len(VOCAB)] == [f"splice__{c}" for c in VOCAB]
    assert names[len(VOCAB):] == ["num__magnification", "cat__lab_a", "cat__lab_b"]
    enc = get_encoder(encoder_spec, device="cpu")
    direct = SpliceTransformer(l1=0.05, encoder=encoder_spec, vocabulary=VOCAB,
                               device="cpu", image_mean=None).fit()
    Xt = pipe[0].transform(df)
    Xt = Xt.toarray() if sp.issparse(Xt) else Xt
    np.testing.assert_allclose(Xt[:, : len(VOCAB)],
                               direct.transform(enc.encode_images(paths)).toarray(), atol=1e-4)


@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_a_frame_of_several_non_numeric_columns_is_refused_by_name(library):
    lib = pytest.importorskip(library)
    from sksplice._inputs import as_rows

    rows = [np.arange(3.0), np.arange(3.0)]
    cells = rows if library == "pandas" else [r.tolist() for r in rows]
    frame = lib.DataFrame({"a": cells, "b": cells})
    with pytest.raises(ValueError, match="ColumnTransformer"):
        as_rows(frame)
    numeric = lib.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert as_rows(numeric).shape == (2, 2)


# ---------------------------------------------------------------- containers without rows
def test_a_generator_of_rows_is_read_once_in_order(problem):
    st, X = problem
    expected = st.transform(X).toarray()
    np.testing.assert_array_equal(st.transform(row for row in X).toarray(), expected)
    np.testing.assert_array_equal(st.transform(map(np.asarray, X)).toarray(), expected)
    fresh = SpliceTransformer(**st.get_params())
    np.testing.assert_array_equal(fresh.fit_transform(iter(list(X))).toarray(), expected)


def test_a_generator_of_paths_gives_the_lists_codes(encoder_spec, image_files):
    paths, _ = image_files
    st = SpliceTransformer(l1=0.05, encoder=encoder_spec, vocabulary=VOCAB, device="cpu",
                           image_mean=None).fit(iter(paths))
    assert st.input_kind_ == "image"
    np.testing.assert_allclose(st.transform(str(p) for p in paths).toarray(),
                               st.transform([str(p) for p in paths]).toarray(), atol=1e-6)


@pytest.mark.parametrize("container", ["set", "frozenset", "dict", "dict_keys", "dict_values"])
def test_unordered_containers_are_refused_by_name(problem, image_files, container):
    st, _ = problem
    paths = [str(p) for p in image_files[0]]
    X = {"set": lambda: set(paths), "frozenset": lambda: frozenset(paths),
         "dict": lambda: dict.fromkeys(paths, 1), "dict_keys": lambda: dict.fromkeys(paths).keys(),
         "dict_values": lambda: {i: p for i, p in enumerate(paths)}.values()}[container]()
    with pytest.raises(TypeError, match=f"X is a {type(X).__name__}, which has no row order"):
        st.transform(X)
    with pytest.raises(TypeError, match="no row order"):
        SpliceTransformer(**st.get_params()).fit(X)
