"""``--dictionary`` on the command line: embeddings need no model, codes equal Python's.

In process (``sksplice.cli.main``) with ``open_clip`` made unimportable, so a
run that loaded a model, or merely imported open_clip, fails.  The synthetic
case always runs; the real one uses the LVIS text embeddings and micrograph
image embeddings of OpenAI CLIP ViT-B/32 in ../shared/data (skipped without).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from sksplice import ConceptDictionary, SpliceTransformer


@pytest.fixture
def no_open_clip(monkeypatch):
    """``import open_clip`` raises ImportError for the test's duration."""
    monkeypatch.setitem(sys.modules, "open_clip", None)
    monkeypatch.setenv("SKSPLICE_OFFLINE", "1")


def _run(argv, capsys):
    from sksplice.cli import main

    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _codes_from_json(doc, names):
    index = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(doc["results"]), len(names)))
    for r, res in enumerate(doc["results"]):
        for c in res["concepts"]:
            out[r, index[c["concept"]]] = c["weight"]
    return out


def _python_codes(cd, mean, X, **params):
    from sksplice.shards import codes_and_cosine

    est = SpliceTransformer(dictionary=cd, image_mean=mean, input="embedding", device="cpu",
                            **params).fit(None)
    codes, cosine = codes_and_cosine(est, X)
    return codes.toarray(), cosine


def _check_same(doc, cd, mean, X, **params):
    expected, cosine = _python_codes(cd, mean, X, **params)
    got = _codes_from_json(doc, cd.names.tolist())
    assert np.count_nonzero(expected) > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose([r["cosine"] for r in doc["results"]], cosine, atol=1e-12)
    assert [r["l0_norm"] for r in doc["results"]] == np.count_nonzero(expected, axis=1).tolist()


def test_synthetic_dictionary_needs_no_model(tmp_path, capsys, no_open_clip):
    rng = np.random.default_rng(0)
    names = [f"concept {i}" for i in range(40)]
    cd = ConceptDictionary(names, rng.normal(size=(40, 16)), metadata={"encoder": "toy"})
    path = cd.save(tmp_path / "toy.npz")
    # embeddings near a few concepts, plus a mean, as CLIP image embeddings are
    W = np.zeros((5, 40))
    W[np.arange(5), [3, 7, 11, 19, 23]] = 1.0
    mean = rng.normal(size=16) * 0.3
    X = W @ cd.embeddings + mean + 0.05 * rng.normal(size=(5, 16))
    np.save(tmp_path / "emb.npy", X)
    np.save(tmp_path / "mean.npy", mean)
    status, out, err = _run(["decompose", str(tmp_path / "emb.npy"), "--dictionary", str(path),
                             "--mean", str(tmp_path / "mean.npy"), "--l1", "0.1", "--json",
                             "--top-k", "0"], capsys)
    assert status == 0, err
    doc = json.loads(out)
    assert doc["model"] == "toy" and doc["n_concepts"] == 40
    assert [r["kind"] for r in doc["results"]] == ["embedding"] * 5
    _check_same(doc, cd, mean, X, l1=0.1)
    # --n-nonzero and --mean none work the same way
    status, out, err = _run(["decompose", str(tmp_path / "emb.npy"), "--dictionary", str(path),
                             "--mean", "none", "--n-nonzero", "3", "--json", "--top-k", "0"],
                            capsys)
    assert status == 0, err
    doc = json.loads(out)
    assert [r["l0_norm"] for r in doc["results"]] == [3] * 5
    _check_same(doc, cd, None, X, n_nonzero=3)
    # the table lists the same top concept
    status, out, _ = _run(["decompose", str(tmp_path / "emb.npy"), "--dictionary", str(path),
                           "--mean", str(tmp_path / "mean.npy"), "--top-k", "1"], capsys)
    assert status == 0 and out.count("Concept decomposition of") == 5
    assert "concept 3 " in out.split("Concept decomposition of")[1]


def test_real_lvis_dictionary_and_micrographs(lvis, micrographs, clip_image_mean, splice_data_dir,
                                              tmp_path, capsys, no_open_clip):
    names, E = lvis
    X, _ = micrographs
    X = X[:12]
    cd = ConceptDictionary(names, E, metadata={"encoder": "ViT-B-32:openai",
                                               "vocabulary": "lvis"})
    path = cd.save(tmp_path / "lvis.npz")
    np.save(tmp_path / "emb.npy", X)
    mean_pt = splice_data_dir / "clip_ViT-B-32_image.pt"  # the reference's own file
    status, out, err = _run(["decompose", str(tmp_path / "emb.npy"), "--dictionary", str(path),
                             "--mean", str(mean_pt), "--json", "--top-k", "0"], capsys)
    assert status == 0, err
    doc = json.loads(out)
    assert doc["n_concepts"] == len(names) == 1203 and doc["model"] == "ViT-B-32:openai"
    _check_same(doc, cd, clip_image_mean, X)
    assert 0.3 < np.mean([r["cosine"] for r in doc["results"]]) < 0.9


def test_options_a_dictionary_makes_unused_are_refused(tmp_path, capsys, no_open_clip):
    cd = ConceptDictionary(["a", "b", "c"], np.eye(3), metadata={"encoder": "toy"})
    path = str(cd.save(tmp_path / "d.npz"))
    np.save(tmp_path / "emb.npy", np.eye(3)[:2])
    emb = str(tmp_path / "emb.npy")
    status, _, err = _run(["decompose", emb, "--dictionary", path, "--vocabulary", "mscoco",
                           "--vocabulary-size", "5"], capsys)
    assert status == 1
    assert "--vocabulary, --vocabulary-size are unused with --dictionary" in err
    status, _, err = _run(["decompose", emb, "--dictionary", path, "--prompt-template",
                           "a photo of {}"], capsys)
    assert status == 1 and "--prompt-template is unused with --dictionary" in err
    status, _, err = _run(["decompose", emb, "--dictionary", path, "--model", "ViT-B-32",
                           "--pretrained", "openai", "--mean", "none"], capsys)
    assert status == 1 and "--model, --pretrained are unused" in err
    assert "embeddings files need no model" in err
    for extra in (["x.png"], ["--text", "a cat"]):
        status, _, err = _run(["decompose", emb, *extra, "--dictionary", path, "--mean", "none"],
                              capsys)
        assert status == 1 and "need a model to embed them" in err and "(toy)" in err
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    status, _, err = _run(["decompose-dir", str(tmp_path / "images"), "--out",
                           str(tmp_path / "o"), "--dictionary", path], capsys)
    assert status == 1 and "need a model to embed them" in err
    assert not (tmp_path / "o").exists()
    # --mean auto with a dictionary of an unregistered model names the fix
    status, _, err = _run(["decompose", emb, "--dictionary", path], capsys)
    assert status == 1 and "no reference image mean" in err and "--mean FILE" in err
    status, _, err = _run(["decompose", emb, "--dictionary", str(tmp_path / "nope.npz"),
                           "--mean", "none"], capsys)
    assert status == 1 and "does not exist" in err and "ConceptDictionary.save" in err
    status, _, err = _run(["decompose", emb, "--dictionary", emb, "--mean", "none"], capsys)
    assert status == 1 and "not a readable .npz" in err
    np.save(tmp_path / "wide.npy", np.ones((2, 5)))
    status, _, err = _run(["decompose", str(tmp_path / "wide.npy"), "--dictionary", path,
                           "--mean", "none"], capsys)
    assert status == 1 and "rows of 5 values" in err


def test_vocabulary_size_minus_one_is_the_whole_vocabulary(capsys):
    from sksplice.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["decompose", "a.png", "--vocabulary-size", "-1"]
                             ).vocabulary_size == -1
    assert parser.parse_args(["decompose", "a.png", "--vocabulary-size", "300"]
                             ).vocabulary_size == 300
    for bad in ("0", "-2", "x"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["decompose", "a.png", "--vocabulary-size", bad])
        assert exc.value.code == 2
        assert "-1 for the whole vocabulary" in capsys.readouterr().err


def test_mean_auto_is_the_reference_mean_of_the_recorded_model(splice_data_dir, offline_sandbox,
                                                               tmp_path, capsys, no_open_clip):
    import shutil

    rng = np.random.default_rng(1)
    # as sksplice.build_dictionary records it: the encoder's identity
    cd = ConceptDictionary([f"c{i}" for i in range(30)], rng.normal(size=(30, 512)),
                           metadata={"encoder": "open_clip/ViT-B-32/openai"})
    path = str(cd.save(tmp_path / "d.npz"))
    np.save(tmp_path / "emb.npy", rng.normal(size=(3, 512)))
    (offline_sandbox / "means").mkdir(parents=True)
    shutil.copy(splice_data_dir / "clip_ViT-B-32_image.pt", offline_sandbox / "means")
    outs = []
    for mean in ("auto", str(splice_data_dir / "clip_ViT-B-32_image.pt")):
        status, out, err = _run(["decompose", str(tmp_path / "emb.npy"), "--dictionary", path,
                                 "--mean", mean, "--json", "--top-k", "0"], capsys)
        assert status == 0, err
        outs.append(json.loads(out)["results"])
    assert outs[0] == outs[1]
