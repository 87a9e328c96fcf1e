"""`rrl-edge bench`: the report's shape and meaning on the shipped model and its ONNX export, and bad input.

Nothing here asserts a speed: timings are only checked for being positive and ordered (p50 <= p99).
"""

import json
import mmap
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rrl_edge.cli import main
from rrl_edge.runtime import memory
from rrl_edge.runtime.bench import REQUIRED_KEYS, parse_batches, time_batch
from rrl_edge.errors import InputError

pytest_plugins = ("export_fixtures",)


@pytest.fixture(scope="module")
def shipped_onnx(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rrl_edge.checkpoint import load_model
    from rrl_edge.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("bench") / "rrl.onnx"
    export_onnx(load_model(trained_checkpoint)[0], path)
    return path


@pytest.fixture(scope="module")
def real_pairs_file(visnir_test, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 real test pairs (2 per category) as a published-format .npy without labels."""
    pairs = np.concatenate([ps.patches[:2] for _, ps in sorted(visnir_test.items())])
    path = tmp_path_factory.mktemp("bench-data") / "pairs.npy"
    np.save(path, pairs)
    return path


def test_bench_checkpoint_and_onnx_on_real_pairs(trained_checkpoint, shipped_onnx, real_pairs_file, tmp_path, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(["bench", str(trained_checkpoint), str(shipped_onnx), "--batch", "4,1", "--seconds", "0.2",
                 "--iters", "3", "--warmup", "1", "--threads", "2", "--data", str(real_pairs_file),
                 "--json", str(out_json), "--plot", str(out_png), "--quiet"])
    assert code == 0
    table = capsys.readouterr().out
    assert "| artifact | backend | precision | batch | p50 ms | p99 ms | pairs/s | x baseline |" in table
    assert "2 threads for every backend" in table and "real test pairs" in table

    report = json.loads(out_json.read_text())
    results = report["results"]
    assert [(r["artifact"], r["batch"]) for r in results] == [
        (str(trained_checkpoint), 1), (str(trained_checkpoint), 4), (str(shipped_onnx), 1), (str(shipped_onnx), 4)]
    for r in results:
        assert list(r)[: len(REQUIRED_KEYS)] == list(REQUIRED_KEYS)
        assert isinstance(r["batch"], int) and r["precision"] == "fp32"
        assert all(isinstance(r[k], float) for k in ("p50_ms", "p99_ms", "pairs_per_s"))
        assert 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["pairs_per_s"] > 0 and r["iterations"] >= 3 and r["threads"] == 2
        assert r["peak_rss_mb"] > r["rss_before_open_mb"] > 0 and r["peak_increase_mb"] > 0
    assert [r["backend"] for r in results] == ["torch", "torch", "onnxruntime", "onnxruntime"]
    assert report["baseline"] == str(trained_checkpoint)
    assert [r["ratio_to_baseline"] for r in results[:2]] == [1.0, 1.0]
    assert all(r["ratio_to_baseline"] > 0 for r in results[2:])
    assert report["threads"] == 2 and "real test pairs" in report["input"]
    assert set(report["backends"]) == {"torch", "onnxruntime"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_without_checkpoint_uses_the_first_artifact_as_baseline(shipped_onnx, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    code = main(["bench", str(shipped_onnx), "--batch", "2", "--seconds", "0", "--iters", "2", "--warmup", "0",
                 "--json", str(out_json), "--quiet"])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert "seeded random" in report["input"]
    assert report["baseline"] == str(shipped_onnx) and report["results"][0]["ratio_to_baseline"] == 1.0


@pytest.mark.parametrize("value", ["0", "x", "8,-1", "1,,2"])
def test_bad_batch_list_is_an_argparse_error_naming_it(value, shipped_onnx, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(shipped_onnx), "--batch", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--batch" in err and "batch size" in err


def test_missing_artifact_and_unknown_suffix_are_named(shipped_onnx, tmp_path, capsys):
    missing = tmp_path / "nothere.onnx"
    assert main(["bench", str(shipped_onnx), str(missing), "--quiet"]) == 2
    assert f"{missing}: artifact not found" in capsys.readouterr().err
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"\0" * 16)
    assert main(["bench", str(odd), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(odd) in err and "'.bin'" in err


def test_an_artifact_the_backend_refuses_is_reported_from_its_process(tmp_path, capsys):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert main(["bench", str(broken), "--batch", "1", "--seconds", "0", "--iters", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{broken}: not a loadable ONNX model" in err


def test_parse_batches_and_timing_loop_counts():
    assert parse_batches("1, 8,64,256") == (1, 8, 64, 256)
    with pytest.raises(InputError, match="'0'"):
        parse_batches("1,0")
    calls = []
    times = time_batch(lambda v, o: calls.append(1), np.zeros(1), np.zeros(1), warmup=2, min_iters=5, seconds=0)
    assert len(calls) == 7 and len(times) == 5  # warm-up runs are not timed
    times = time_batch(lambda v, o: None, np.zeros(1), np.zeros(1), warmup=0, min_iters=1, seconds=0.05)
    assert len(times) > 1  # kept running until the minimum time


def test_peak_memory_is_reset_and_tracks_an_allocation():
    if not memory.reset_peak():
        pytest.skip("this system cannot reset the peak RSS (no writable /proc/self/clear_refs)")
    start = memory.rss_mb()
    # 200 MB of fresh anonymous pages, every page touched: a heap allocation could reuse pages an earlier test freed
    # but the allocator kept resident, and then the RSS would not grow
    block = mmap.mmap(-1, 200 * 2**20)
    block.write(b"\x01" * len(block))
    assert memory.peak_rss_mb() >= start + 150
    block.close()
    memory.reset_peak()
    assert memory.peak_rss_mb() < start + 100


def test_bench_module_imports_without_torch():
    code = "import sys, rrl_edge.runtime.bench, rrl_edge.runtime.bench_command; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
