"""The command line's parser and its guards, in process and without a model (fast).

Everything here is refused or checked before a model is loaded; the end-to-end
runs of the console script are in tests/test_cli.py.
"""

from __future__ import annotations

import json

import pytest
from _clip_helpers import TINY_CFG


@pytest.fixture
def files(tmp_path):
    """An image path, a model config and a (small, fake) checkpoint file."""
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(TINY_CFG))
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"\0" * 1024)
    return {"image": str(tmp_path / "top.png"), "config": str(config),
            "checkpoint": str(checkpoint)}


# ------------------------------------------------------ hostile and careless input
def test_a_model_name_never_becomes_a_path(files, tmp_path, capsys):
    from sksplice.cli import main

    (tmp_path / "dir").mkdir()
    victim = tmp_path / "dir" / "victim.json"
    victim.write_text("precious")
    for name in (str(tmp_path / "dir" / "victim"), "../../victim", "a/b", "..", "x\\y"):
        status = main(["decompose", files["image"], "--model", name, "--model-config",
                       files["config"], "--checkpoint", files["checkpoint"], "--device", "cpu"])
        err = capsys.readouterr().err
        assert status == 1 and "is not a model name" in err, (name, err)
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["victim.json"]


def test_small_inputs_cannot_ask_for_unbounded_work(capsys):
    from sksplice.cli import main

    img = "top.png"
    for extra in (["--prompt-template", "{:>999999999}"], ["--prompt-template", "{0}"],
                  ["--prompt-template", "{!r}"], ["--prompt-template", "x" * 5000 + "{}"],
                  ["--max-iter", str(10**9)], ["--batch-size", str(10**7)],
                  ["--n-nonzero", str(10**9)]):
        with pytest.raises(SystemExit) as exc:
            main(["decompose", img, *extra])
        assert exc.value.code == 2, extra
        assert "usage: sksplice" in capsys.readouterr().err


def test_a_config_much_larger_than_its_checkpoint_is_refused(files, tmp_path, capsys):
    from sksplice.cli import main

    huge = dict(TINY_CFG, vision_cfg=dict(TINY_CFG["vision_cfg"], width=65536, layers=512))
    config = tmp_path / "huge.json"
    config.write_text(json.dumps(huge))
    status = main(["decompose", files["image"], "--model-config", str(config),
                   "--checkpoint", files["checkpoint"], "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 1 and "does not describe these weights" in err


def test_solver_choices_come_from_the_registry(capsys):
    from sksplice.cli import build_parser, main
    from sksplice.solvers import list_solvers

    with pytest.raises(SystemExit) as exc:
        main(["decompose", "a.png", "--solver", "nope"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid choice: 'nope'" in err
    for name in list_solvers():
        assert repr(name) in err
    args = build_parser().parse_args(["decompose", "a.png", "--solver", list_solvers()[-1]])
    assert args.solver == list_solvers()[-1]


def test_cli_defaults_are_the_librarys():
    import inspect

    from sksplice import SpliceTransformer, _defaults
    from sksplice.cli import build_parser
    from sksplice.shards import decompose_to_shards

    parser = build_parser()
    est = SpliceTransformer()
    for argv in (["decompose", "a.png"], ["decompose-dir", "d", "--out", "o"]):
        args = parser.parse_args(argv)
        # --l1 absent: the estimator's own default applies
        assert args.l1 is None and est.l1 == _defaults.L1
        assert args.vocabulary == est.vocabulary == _defaults.VOCABULARY
        assert args.vocabulary_size == est.vocabulary_size == _defaults.VOCABULARY_SIZE
        assert args.prompt_template == est.prompt_template == _defaults.PROMPT_TEMPLATE
        assert args.tol == est.tol == _defaults.TOL
        assert args.solver == est.solver and args.device == est.device
        assert args.batch_size == _defaults.IMAGE_BATCH_SIZE
    assert build_parser().parse_args(["decompose", "a.png", "--vocabulary", "laion_bigrams"]
                                     ).vocabulary_size == SpliceTransformer(
        vocabulary="laion_bigrams").vocabulary_size
    sig = inspect.signature(decompose_to_shards).parameters
    args = parser.parse_args(["decompose-dir", "d", "--out", "o"])
    assert args.shard_size == sig["shard_size"].default == _defaults.SHARD_SIZE
    assert args.top_k == sig["top_k"].default == _defaults.TOP_K


def test_report_defaults_are_build_reports():
    """`sksplice report` reads its defaults from _defaults; they are build_report's."""
    import inspect

    from sksplice.cli import build_parser
    from sksplice.report import build_report

    sig = inspect.signature(build_report).parameters
    args = build_parser().parse_args(["report", "out"])
    for name in ("top_concepts", "images_per_concept", "concepts_per_image", "thumbnail_size",
                 "max_thumbnails"):
        assert getattr(args, name) == sig[name].default, name


def test_help_does_not_import_the_report_package():
    import subprocess
    import sys

    code = ("import sys; from sksplice.cli import build_parser; build_parser(); "
            "print('sksplice.report' in sys.modules, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
