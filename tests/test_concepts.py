"""Concept dictionaries: encode, centre, cache on disk (keys, hits, atomic writes)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _clip_helpers import TINY, count_calls

from sksplice import ConceptDictionary, Encoder, build_dictionary, get_encoder
from sksplice.concepts import dictionary_cache_key, get_cache_dir

VOCAB = ["dog", "cat", "red car", "sunset", "mountain", "beach", "city street", "forest"]


@pytest.fixture(autouse=True)
def _sandbox(offline_sandbox):
    return offline_sandbox


@pytest.fixture
def encoder(tiny_checkpoint):
    return get_encoder((TINY, tiny_checkpoint), device="cpu")


def _entries(cache):
    return sorted((cache / "dictionaries").glob("*")) if (cache / "dictionaries").exists() else []


def test_dictionary_is_the_paper_recipe(encoder):
    cd = build_dictionary(encoder, VOCAB)
    raw = encoder.encode_texts(VOCAB)
    expected = ConceptDictionary(VOCAB, raw)  # normalise, subtract the mean, normalise
    np.testing.assert_allclose(cd.embeddings, expected.embeddings, atol=1e-6)
    np.testing.assert_allclose(cd.text_mean, raw.astype(np.float64).mean(0), atol=1e-6)
    assert cd.names.tolist() == VOCAB
    assert cd.metadata["encoder"] == encoder.identity
    assert cd.metadata["cache_hit"] is False


def test_uncached_build_still_records_the_model(encoder, offline_sandbox):
    """cache=False must not record a repr: the model check compares identities."""
    import warnings

    from sksplice import SpliceTransformer
    from sksplice.exceptions import ModelMismatchWarning

    cd = build_dictionary(encoder, VOCAB, cache=False)
    assert cd.metadata["encoder"] == encoder.identity and not _entries(offline_sandbox)
    st = SpliceTransformer(dictionary=cd, encoder=encoder, input="text", image_mean=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        st.fit(["a red car"]).transform(["a blue sky"])


def test_second_build_hits_the_cache(encoder, offline_sandbox, monkeypatch):
    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    first = build_dictionary(encoder, VOCAB)
    assert calls == [len(VOCAB)]
    assert len(_entries(offline_sandbox)) == 1
    # a fresh encoder object for the same checkpoint: same identity, cache hit, no encoding
    again = get_encoder((TINY, encoder.checkpoint), device="cpu")
    second = build_dictionary(again, VOCAB)
    assert calls == [len(VOCAB)]  # nothing encoded again (timed in benchmarks/bench_dictionary.py)
    assert second.metadata["cache_hit"] is True
    assert second == first
    np.testing.assert_array_equal(second.text_mean, first.text_mean)


def test_cache_key_covers_everything_that_changes_the_result(encoder, offline_sandbox,
                                                             monkeypatch, tiny_model, tmp_path):
    import torch

    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    build_dictionary(encoder, VOCAB)
    build_dictionary(encoder, VOCAB, prompt_template="a photo of {}")   # template
    build_dictionary(encoder, VOCAB[:-1])                                # vocabulary content
    build_dictionary(encoder, VOCAB[::-1])                               # vocabulary order
    # another checkpoint of the same architecture
    other = tmp_path / "other.pt"
    sd = {k: v + 0.01 if v.dtype.is_floating_point else v
          for k, v in tiny_model.state_dict().items()}
    torch.save(sd, other)
    build_dictionary(get_encoder((TINY, other), device="cpu"), VOCAB)
    assert len(calls) == 5 and len(_entries(offline_sandbox)) == 5
    # the key itself also includes precision and version
    k = dictionary_cache_key("id", VOCAB)
    assert k != dictionary_cache_key("id", VOCAB, precision="fp16")
    assert k != dictionary_cache_key("id2", VOCAB)
    import sksplice.concepts as concepts

    monkeypatch.setattr(concepts, "__version__", "99.0")
    assert k != dictionary_cache_key("id", VOCAB)


def test_cache_dir_argument_and_opt_out(encoder, tmp_path, offline_sandbox, monkeypatch):
    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    build_dictionary(encoder, VOCAB, cache_dir=tmp_path / "elsewhere")
    assert len(_entries(tmp_path / "elsewhere")) == 1 and not _entries(offline_sandbox)
    assert get_cache_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    build_dictionary(encoder, VOCAB, cache=False)
    build_dictionary(encoder, VOCAB, cache=False)
    assert len(calls) == 3 and not _entries(offline_sandbox)


def test_random_weights_are_never_cached(tiny_config, offline_sandbox, monkeypatch):
    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    enc = get_encoder((TINY, None), device="cpu")
    build_dictionary(enc, VOCAB)
    build_dictionary(enc, VOCAB)
    assert len(calls) == 2 and not _entries(offline_sandbox)


def test_interrupted_write_leaves_no_entry(encoder, offline_sandbox, monkeypatch):
    """A writer that dies midway (after writing part of the file) leaves nothing behind."""
    import sksplice.concepts as concepts

    real_savez = np.savez

    def dying_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt("killed while writing the cache")

    monkeypatch.setattr(concepts.np, "savez", dying_savez)
    with pytest.raises(KeyboardInterrupt):
        build_dictionary(encoder, VOCAB)
    assert _entries(offline_sandbox) == []  # no entry, no temporary file
    monkeypatch.setattr(concepts.np, "savez", real_savez)
    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    cd = build_dictionary(encoder, VOCAB)
    assert calls == [len(VOCAB)] and cd.metadata["cache_hit"] is False
    assert len(_entries(offline_sandbox)) == 1
    assert build_dictionary(encoder, VOCAB).metadata["cache_hit"] is True


def test_damaged_entry_is_detected_and_rebuilt(encoder, offline_sandbox, monkeypatch):
    first = build_dictionary(encoder, VOCAB)
    (entry,) = _entries(offline_sandbox)
    entry.write_bytes(entry.read_bytes()[:100])  # e.g. a disk-full truncation
    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    with pytest.warns(RuntimeWarning, match="damaged"):
        second = build_dictionary(encoder, VOCAB)
    assert calls == [len(VOCAB)]
    assert second == first
    assert build_dictionary(encoder, VOCAB).metadata["cache_hit"] is True


def test_unwritable_cache_only_warns(encoder, tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with pytest.warns(RuntimeWarning, match="cannot write the dictionary cache"):
        cd = build_dictionary(encoder, VOCAB, cache_dir=blocker)
    assert cd.n_concepts == len(VOCAB)


def test_builtin_vocabulary_and_size(encoder, splice_data_dir, offline_sandbox):
    # a registered vocabulary provided in the cache (as a user would, offline)
    (offline_sandbox / "vocab").mkdir(parents=True)
    (offline_sandbox / "vocab" / "mscoco.txt").write_bytes(
        (splice_data_dir / "mscoco.txt").read_bytes())
    cd = build_dictionary(encoder, "mscoco", vocabulary_size=40, offline=True)
    assert cd.n_concepts == 40 and cd.names[-1] == "a"
    cleaned = build_dictionary(encoder, "mscoco", vocabulary_size=40, clean=True, offline=True)
    assert "a" not in cleaned.names.tolist() and cleaned.n_concepts == 40


@pytest.mark.parametrize("template, match", [
    ("a photo", "exactly one"), ("{} {}", "exactly one"), ("{0}", "exactly one"),
    ("{0} {}", "exactly one"), ("{} }", "valid format"), (3, "must be a string"),
])
def test_bad_prompt_template(encoder, template, match):
    with pytest.raises(ValueError, match=match):
        build_dictionary(encoder, VOCAB, prompt_template=template)


def test_empty_vocabulary(encoder):
    with pytest.raises(ValueError, match="empty"):
        build_dictionary(encoder, [])


def test_prompt_template_with_literal_braces(encoder):
    cd = build_dictionary(encoder, ["dog", "cat"], prompt_template="{{tag}} {}")
    assert cd.metadata["prompt_template"] == "{{tag}} {}"


def test_prompt_template_is_applied(encoder, monkeypatch):
    seen = []
    real = Encoder.encode_texts

    def spy(self, texts, **kw):
        seen.extend(texts)
        return real(self, texts, **kw)

    monkeypatch.setattr(Encoder, "encode_texts", spy)
    cd = build_dictionary(encoder, ["dog", "cat"], prompt_template="a photo of a {}.")
    assert seen == ["a photo of a dog.", "a photo of a cat."]
    assert cd.names.tolist() == ["dog", "cat"]


@pytest.mark.parametrize("template", ["{:>1000000000}", "{!r}", "a photo of {:x^99999999}"])
def test_prompt_template_cost_is_bounded(encoder, template):
    with pytest.raises(ValueError, match="format specification"):
        build_dictionary(encoder, VOCAB, prompt_template=template)
    with pytest.raises(ValueError, match="at most 1000"):
        build_dictionary(encoder, VOCAB, prompt_template="{}" + "x" * 5000)


def test_concurrent_cold_builds_encode_once(encoder, offline_sandbox, monkeypatch):
    """Two builds racing on a cold cache (as GridSearchCV(n_jobs=2) workers): one encodes."""
    import threading

    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    real = Encoder.encode_texts
    started = threading.Event()

    def slow(self, texts, **kw):
        started.set()
        time.sleep(0.3)  # hold the lock while the other build arrives
        return real(self, texts, **kw)

    monkeypatch.setattr(Encoder, "encode_texts", slow)
    results = []
    threads = [threading.Thread(target=lambda: results.append(build_dictionary(encoder, VOCAB)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [len(VOCAB)]
    assert sorted(r.metadata["cache_hit"] for r in results) == [False, True]
    assert results[0] == results[1]
    assert len(_entries(offline_sandbox)) == 1


_PROCESS_BUILD = """
import sys
from _clip_helpers import TINY
import json, open_clip
open_clip.add_model_config(sys.argv[2])
from sksplice import Encoder, build_dictionary, get_encoder
calls = []
real = Encoder.encode_texts
def counted(self, texts, **kw):
    calls.append(len(texts))
    return real(self, texts, **kw)
Encoder.encode_texts = counted
build_dictionary(get_encoder((TINY, sys.argv[1]), device="cpu"), sys.argv[3].split(","))
print(len(calls))
"""


@pytest.mark.slow
def test_two_processes_on_a_cold_cache_encode_once(tiny_checkpoint, tiny_config, tmp_path,
                                                   offline_sandbox):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from _clip_helpers import TINY_CFG

    cfg = tmp_path / f"{TINY}.json"
    cfg.write_text(json.dumps(TINY_CFG))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parents[1])])}
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS_BUILD, str(tiny_checkpoint),
                               str(cfg), ",".join(VOCAB)], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    counts = [int(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(counts) == [0, 1]
    assert len(_entries(offline_sandbox)) == 1
