"""What sksplice reads: only regular files of bounded size, split into lines at newlines only.

Every entry point that takes a path refuses a named pipe, a device, a socket
or a directory by name, before opening it (a pipe with no writer would block
the open forever: :func:`call_without_hanging` turns that into a failure), and
every whole-file read has a size cap named in its error.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
from _hostile_helpers import call_without_hanging, make_fifo, make_socket

from sksplice import ConceptDictionary, load_decomposition, load_vocabulary
from sksplice._download import fetch
from sksplice.cli import main
from sksplice.cli._inputs import load_embeddings_file, read_texts
from sksplice.cli._resolve import CLIError, _register_model_config, load_mean_file
from sksplice.encoders._images import check_files_exist, load_image
from sksplice.shards._files import read_images
from sksplice.shards._format import read_concepts, read_manifest, read_shard

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")

KINDS = ["fifo", "directory", "socket", "device"]


def _special(path, kind, keep):
    """Make ``path`` a special file of ``kind``; returns the pipes a hang guard must open."""
    if kind == "fifo":
        return [make_fifo(path)]
    if kind == "directory":
        path.mkdir()
    elif kind == "socket":
        keep.append(make_socket(path)[1])
    else:  # a link named like a data file, to a device (/dev/null: a regression ends)
        path.symlink_to("/dev/null")
    return []


def _texts(path):
    return read_texts(argparse.Namespace(text=[], texts=str(path)))


def _manifest_folder(path):
    return read_manifest(path.parent)


ENTRY_POINTS = {  # name -> (file name, call)
    "vocabulary": ("vocab.txt", load_vocabulary),
    "--texts": ("texts.txt", _texts),
    "embeddings .npy": ("emb.npy", lambda p: load_embeddings_file(str(p), 16)),
    "embeddings .pt": ("emb.pt", lambda p: load_embeddings_file(str(p), 16)),
    "embeddings .safetensors": ("emb.safetensors", lambda p: load_embeddings_file(str(p), 16)),
    "mean .npy": ("mean.npy", lambda p: load_mean_file(p, 16)),
    "mean .pt": ("mean.pt", lambda p: load_mean_file(p, 16)),
    "model config": ("cfg.json", lambda p: _register_model_config(p, "m", p)),
    "image (Python)": ("img.png", lambda p: load_image(str(p), 0)),
    "image (check)": ("img.jpg", lambda p: check_files_exist([str(p)])),
    "image (strict run)": ("img.png", lambda p: read_images([str(p)], strict=True)),
    "shard": ("shard-000000.npz", read_shard),
    "manifest": ("manifest.json", _manifest_folder),
    "manifest (load)": ("manifest.json", lambda p: load_decomposition(p.parent)),
    "concept list": ("concepts.json", lambda p: read_concepts(p.parent, {})),
    "saved dictionary": ("lvis.npz", ConceptDictionary.load),
    "cache file": ("laion.txt", lambda p: fetch("laion.txt", "0" * 64, cache_dir=p.parent,
                                                offline=True, what="vocabulary 'laion'")),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_special_files_are_refused_by_name_without_opening(tmp_path, entry, kind):
    name, call = ENTRY_POINTS[entry]
    path = tmp_path / name
    keep = []
    fifos = _special(path, kind, keep)
    error = call_without_hanging(lambda: call(path), fifos)
    assert error is not None, f"{entry} accepted a {kind}"
    assert isinstance(error, (ValueError, OSError, CLIError)), repr(error)
    message = str(error)
    # in an output folder, a link to /dev/null is already refused as leading outside it
    assert ("not a regular file" in message or "outside the folder" in message), message
    assert name in message, message
    for sock in keep:
        sock.close()


def test_a_skipped_special_image_is_listed_with_the_reason(tmp_path):
    fifo = make_fifo(tmp_path / "pipe.png")
    error = call_without_hanging(lambda: read_images([str(fifo)]), [fifo])
    assert error is None
    images, ok, bad = read_images([str(fifo)])
    assert images == [] and ok == [] and "named pipe" in bad[0][1]


@pytest.mark.parametrize("command", [["decompose", "--texts"], ["build-vocabulary"]])
def test_cli_refuses_a_pipe_in_one_line(tmp_path, capsys, command):
    fifo = make_fifo(tmp_path / "lines.txt")
    box = {}
    error = call_without_hanging(lambda: box.setdefault("rc", main([*command, str(fifo)])),
                                 [fifo])
    assert error is None and box["rc"] == 1
    err = capsys.readouterr().err
    assert "named pipe" in err and "lines.txt" in err and err.count("\n") == 1


def test_a_link_to_a_regular_file_is_read(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("dog\ncat\n")
    (tmp_path / "link.txt").symlink_to(target)
    assert load_vocabulary(tmp_path / "link.txt") == ["dog", "cat"]


# ---------------------------------------------------------------- size caps
def test_whole_file_reads_have_a_cap_named_in_the_error(tmp_path, monkeypatch):
    from sksplice._io import RefusedFileError, read_bytes, read_json

    big = tmp_path / "manifest.json"
    with open(big, "wb") as f:  # a sparse file: no disk space used
        f.truncate(65 * 1024 * 1024)
    with pytest.raises(RefusedFileError, match=r"manifest.json.* more than the 67108864 bytes"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match=r"big\.txt.* more than the 10 bytes"):
        (tmp_path / "big.txt").write_text("x" * 11)
        read_bytes(tmp_path / "big.txt", "text file", 10)
    assert read_json(_write(tmp_path / "ok.json", "[1]"), "list", 3) == [1]
    import sksplice.vocabularies as vocabularies

    monkeypatch.setattr(vocabularies, "MAX_FILE_BYTES", 8)
    with pytest.raises(ValueError, match=r"vocabulary file .*v\.txt.* 12 bytes, more than the 8"):
        load_vocabulary(_write(tmp_path / "v.txt", "dog\ncat\ncow\n"))


def _write(path, text):
    path.write_text(text)
    return path


def test_check_regular_file_names_a_missing_path(tmp_path):
    from sksplice._io import check_regular_file

    for device in ("/dev/zero", "/dev/urandom"):  # never read: refused from their status
        if os.path.exists(device):
            with pytest.raises(ValueError, match="not a regular file"):
                check_regular_file(device, "embeddings file")
    with pytest.raises(FileNotFoundError, match="checkpoint .*nope.pt.* does not exist"):
        check_regular_file(tmp_path / "nope.pt", "checkpoint")
    assert check_regular_file(_write(tmp_path / "a.txt", "abc"), max_bytes=3).st_size == 3


# ---------------------------------------------------------------- line splitting
OTHER_SEPARATORS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("sep", OTHER_SEPARATORS)
def test_only_a_newline_ends_a_vocabulary_line(tmp_path, sep):
    path = _write(tmp_path / "v.txt", f"dog\nred{sep}car\ncat\n")
    with pytest.raises(ValueError, match=rf"line 2 of vocabulary file .*U\+{ord(sep):04X}"):
        load_vocabulary(path)


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b", "\r"])
def test_control_characters_inside_a_concept_are_refused_by_line(tmp_path, bad):
    path = _write(tmp_path / "v.txt", f"dog\ncat\nzeb{bad}ra\n")
    with pytest.raises(ValueError, match=rf"line 3 of vocabulary file .*U\+{ord(bad):04X}"):
        load_vocabulary(path)


def test_windows_line_ends_and_tabs_are_text(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"dog\r\nred car\r\nsea\tside\r\n")
    assert load_vocabulary(path) == ["dog", "red car", "sea\tside"]
    from sksplice._io import split_lines

    assert split_lines("a\r\nb\n\nc") == ["a", "b", "", "c"]


@pytest.mark.parametrize("sep", ["\x0c", "\u2028", "\x00"])
def test_texts_files_split_at_newlines_only(tmp_path, sep):
    path = _write(tmp_path / "t.txt", f"a photo of a dog\r\na{sep}b\n")
    with pytest.raises(ValueError, match=rf"line 2 of text file .*t\.txt.*U\+{ord(sep):04X}"):
        _texts(path)
    assert _texts(_write(tmp_path / "ok.txt", "a dog\r\n\n a cat \n")) == ["a dog", "a cat"]


def test_embeddings_and_means_still_load_from_regular_files(tmp_path):
    X = np.arange(32, dtype=np.float32).reshape(2, 16) + 1
    np.save(tmp_path / "e.npy", X)
    np.testing.assert_array_equal(load_embeddings_file(str(tmp_path / "e.npy"), 16), X)
    from safetensors.numpy import save_file

    save_file({"x": X}, str(tmp_path / "e.safetensors"))
    np.testing.assert_array_equal(load_embeddings_file(str(tmp_path / "e.safetensors"), 16), X)
    np.save(tmp_path / "m.npy", X[0])
    np.testing.assert_array_equal(load_mean_file(tmp_path / "m.npy", 16), X[0])
