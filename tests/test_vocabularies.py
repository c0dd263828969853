"""Vocabularies: files, lists, sizes, cleaning, errors, and build_vocabulary."""

from __future__ import annotations

import pytest

from sksplice import build_vocabulary, load_vocabulary
from sksplice.vocabularies import ENGLISH_STOPWORDS, clean_vocabulary


def test_list_keeps_order_and_takes_the_most_frequent_tail():
    vocab = ["rare", "sometimes", "often", "always"]
    assert load_vocabulary(vocab) == vocab
    assert load_vocabulary(vocab, 2) == ["often", "always"]
    assert load_vocabulary(vocab, 10) == vocab
    assert load_vocabulary(tuple(vocab), 1) == ["always"]


def test_text_file_follows_the_reference_parsing(tmp_path):
    path = tmp_path / "my_vocab.txt"
    path.write_text("  zebra  \nsky, extra, columns\n\ncar\nred car\n")
    assert load_vocabulary(path) == ["zebra", "sky", "car", "red car"]
    assert load_vocabulary(str(path), 2) == ["car", "red car"]


def test_real_laion_file_top_10000(splice_data_dir):
    concepts = load_vocabulary(splice_data_dir / "laion.txt", 10000)
    lines = (splice_data_dir / "laion.txt").read_text().splitlines()
    assert concepts == [ln.strip().split(", ")[0] for ln in lines[-10000:]]


def test_clean_drops_stopwords_numbers_and_punctuation(splice_data_dir):
    assert clean_vocabulary(["-", "...", "2", "1080p", "the", "of the", "in car", "dog"]) == [
        "1080p", "in car", "dog",
    ]
    full = load_vocabulary(splice_data_dir / "laion.txt", 10000)
    cleaned = load_vocabulary(splice_data_dir / "laion.txt", 10000, clean=True)
    assert len(cleaned) == 10000  # cleaning happens before taking the top concepts
    assert not {"the", "of", "-", "2", "&"} & set(cleaned)
    assert {"the", "of", "-", "2"} <= set(full)
    assert all(any(ch.isalpha() for ch in c) for c in cleaned)


@pytest.mark.parametrize(
    "vocabulary, size, match",
    [
        ([], None, "empty"),
        (["the", "of", "4"], None, "empty after cleaning"),
        (["cat", "dog", "cat"], None, r"repeats \['cat'\]"),
        (["cat", 3], None, "must be strings"),
        (["cat", "  "], None, "blank"),
        (["cat"], 0, "positive integer"),
        (["cat"], 2.5, "positive integer"),
        (None, None, "vocabulary=None"),
        (42, None, "name, a path or a list"),
    ],
)
def test_bad_vocabularies(vocabulary, size, match):
    clean = vocabulary == ["the", "of", "4"]
    with pytest.raises(ValueError, match=match):
        load_vocabulary(vocabulary, size, clean=clean)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"unknown vocabulary 'laoin'\. Did you mean 'laion'"):
        load_vocabulary("laoin")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vocabulary(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_vocabulary(str(tmp_path / "nope.txt"))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n")
    with pytest.raises(ValueError, match="empty"):
        load_vocabulary(path)


def test_build_vocabulary_recipe():
    captions = [
        "A red car parked on the street.",
        "red car, blue sky",
        "The RED car and a dog",
        "dog on the beach at sunset 2021",
        "a dog's toy",
        "sunset",
    ]
    vocab = build_vocabulary(captions, n_words=4, n_bigrams=1)
    # least to most frequent: red (3), car (3), dog (3), sunset (2) | bigram "red car" (3)
    assert vocab[-1] == "red"
    assert set(vocab) == {"red", "car", "dog", "sunset", "red car"}
    assert vocab[0] == "sunset"
    assert not set(vocab) & ENGLISH_STOPWORDS
    # numbers and non-alphabetic tokens never appear; bigrams need adjacent kept words
    full = build_vocabulary(captions)
    assert "2021" not in full and "dog's" not in full
    assert "dog beach" not in full  # "dog on the beach": the stopwords break the phrase
    assert "blue sky" in full and "car blue" not in full  # punctuation breaks phrases too
    counts = {"red": 3, "car": 3, "dog": 3, "red car": 3, "sunset": 2}
    ordered = [c for c in full if c in counts]
    assert [counts[c] for c in ordered] == sorted(counts[c] for c in ordered)


def test_build_vocabulary_options_and_errors():
    caps = ["cat cat dog", "cat bird"]
    assert build_vocabulary(caps, n_bigrams=0) == ["bird", "dog", "cat"]
    assert build_vocabulary(caps, n_bigrams=0, min_count=2) == ["cat"]
    assert build_vocabulary(caps, n_bigrams=0, stopwords={"cat"}) == ["bird", "dog"]
    with pytest.raises(ValueError, match="one string"):
        build_vocabulary("cat dog")
    with pytest.raises(ValueError, match="empty"):
        build_vocabulary([])
    with pytest.raises(ValueError, match="no concept survived"):
        build_vocabulary(["the of 42"])
    with pytest.raises(ValueError, match="n_words"):
        build_vocabulary(caps, n_words=-1)
    with pytest.raises(ValueError, match="must be strings"):
        build_vocabulary(["cat", None])


def test_whole_vocabulary_and_default_size(splice_data_dir):
    path = splice_data_dir / "laion.txt"
    whole = load_vocabulary(path, -1)
    assert len(whole) == 37445 and whole == load_vocabulary(path, None)  # a file: everything
    assert load_vocabulary(["a", "b", "c"], -1) == ["a", "b", "c"]
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=r"-1 for the whole vocabulary, or None for the "
                                             r"vocabulary's default size"):
            load_vocabulary(["a"], bad)


def test_byte_order_mark_is_not_part_of_a_concept(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffzebra\ncar\n".encode())
    assert load_vocabulary(path) == ["zebra", "car"]


def test_vocabulary_inputs_are_bounded(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("dog\n" + "x" * 100_000 + "\ncat\n")
    with pytest.raises(ValueError, match="line 2 .* 100000 characters"):
        load_vocabulary(path)
    with pytest.raises(ValueError, match="100000 characters"):
        load_vocabulary(["dog", "x" * 100_000])
    with pytest.raises(ValueError, match="a string of 1000000 characters"):
        load_vocabulary("l" * 1_000_000)


def test_build_vocabulary_uses_scikit_learns_stop_words():
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    assert ENGLISH_STOPWORDS < ENGLISH_STOP_WORDS
    assert {"the", "whereafter", "of"} <= ENGLISH_STOPWORDS
    assert not {"fire", "top", "front", "thin"} & ENGLISH_STOPWORDS  # they name things
    assert clean_vocabulary(["fire", "the", "top", "of"]) == ["fire", "top"]
    assert build_vocabulary(["whereafter the cat sat", "cat"], n_bigrams=0) == ["sat", "cat"]
