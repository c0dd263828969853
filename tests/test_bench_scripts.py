"""Smoke runs of the benchmark scripts on the CPU (tiny model, few concepts, offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _clip_helpers import TINY, TINY_CFG

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env_and_config(tmp_path):
    config = tmp_path / f"{TINY}.json"
    config.write_text(json.dumps(TINY_CFG))
    env = {**os.environ, "SKSPLICE_CACHE": str(tmp_path / "cache"), "SKSPLICE_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    return env, config


def _run(args, env):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_gpu_encode_vocabulary_runs_on_cpu_with_limit(env_and_config, splice_data_dir, tmp_path):
    env, config = env_and_config
    out = _run(["benchmarks/gpu_encode_vocabulary.py", "--model", TINY, "--model-config",
                str(config), "--vocab-file", str(splice_data_dir / "laion.txt"), "--device",
                "cpu", "--limit", "40", "--check", "8", "--save", str(tmp_path / "d.npz"),
                "--json", str(tmp_path / "s.json")], env)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["concepts"] == 40 and summary["truncated"] is True
    assert summary["device"] == "cpu" and summary["precision"] == "fp32"
    assert summary["max_abs_diff"] <= 1e-5
    assert "concepts/s" in out
    import numpy as np

    with np.load(tmp_path / "d.npz") as d:
        assert d["embeddings"].shape == (40, 32) and d["names"][-1] == "-"


@pytest.mark.slow
def test_bench_dictionary_smoke(env_and_config, splice_data_dir, tmp_path):
    env, config = env_and_config
    out = _run(["benchmarks/bench_dictionary.py", "--model", TINY, "--model-config", str(config),
                "--vocab-file", str(splice_data_dir / "laion.txt"), "--n-concepts", "24",
                "--repeat", "1", "--no-full-vocab", "--out", str(tmp_path / "b.json")], env)
    results = json.loads((tmp_path / "b.json").read_text())
    assert results["n"] == 24 and results["max_abs_diff"] <= 1e-5
    # the cache-hit time is a benchmark figure (printed), not a timed assertion
    assert results["cache_hit_s"] >= 0.0
    assert "speed-up" in out and "exact truncation" in out


@pytest.mark.slow
def test_bench_peers_smoke(lvis, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = _run(["benchmarks/bench_peers.py", "--problems", "lvis", "--l1", "0.25",
                "--batches", "1,64", "--threads", "1", "--reps", "1", "--no-plot",
                "--out", str(tmp_path)], env)
    rows = json.loads((tmp_path / "bench_peers.json").read_text())["rows"]
    assert [r["batch"] for r in rows] == [1, 64]
    for r in rows:
        assert r["gap_sksplice"] <= 1e-6
        assert {"sksplice", "matmul"} <= set(r["ms"])
        if "spams" in r["ms"]:  # an optional peer (the bench extra)
            assert r["obj_diff"] <= 1e-6
    assert "transform" in rows[0]["ms"]
    assert "load" in out and "vs spams" in out


@pytest.mark.slow
def test_bench_report_smoke(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = _run(["benchmarks/bench_report.py", "--sizes", "30", "--in-memory", "60", "--keep",
                str(tmp_path)], env)
    assert "30 images (folder)" in out and "60 rows (in memory)" in out
    page = (tmp_path / "out_30" / "report.html").read_text()
    assert page.count("background-image:url(data:") == 30  # every image, embedded


@pytest.mark.slow
def test_bench_startup_smoke(env_and_config, tmp_path):
    env, _ = env_and_config
    out = _run(["benchmarks/bench_startup.py", "--n-images", "4", "--repeats", "1",
                "--out", str(tmp_path / "bench_startup.json")], env)
    assert "decompose-dir" in out and "imports of one decompose-dir run" in out
    rows = json.loads((tmp_path / "bench_startup.json").read_text())["rows"]
    dirs = [r for r in rows if r["command"] == "decompose-dir"]
    assert dirs and dirs[0]["first_image_s"] is not None  # the audit hook saw an image
    assert dirs[0]["first_image_s"] <= dirs[0]["total_s"]


@pytest.mark.slow
def test_bench_output_scale_smoke(shared_data_dir, tmp_path):
    env = {**os.environ, "SKSPLICE_SHARED_DATA": str(shared_data_dir), "OMP_NUM_THREADS": "1"}
    out = _run(["benchmarks/bench_output_scale.py", "--tasks", "material", "imagenet-dog",
                "--l1", "0.25", "--scales", "30", "100", "--folds", "2",
                "--out", str(tmp_path / "s.json")], env)
    results = json.loads((tmp_path / "s.json").read_text())
    assert [r["task"] for r in results] == ["material", "imagenet-dog"]
    for r in results:
        (row,) = r["rows"]
        assert set(row["accuracy"]) == {"30.0", "100.0"}  # JSON keys
        assert all(0.0 <= a <= 1.0 for a in row["accuracy"].values())
    assert [r["n"] for r in results] == [803, 1000]  # 5 materials with >= 20 images; 1000 rows
    assert results[1]["majority"] == pytest.approx(0.882)  # 118 dog classes of 1000
    assert "| material |" in out and "scale 100" in out
