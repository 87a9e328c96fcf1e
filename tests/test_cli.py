"""The command line as a user runs it: data build into a folder, eval on a published-format patch file, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rrl_edge.data.patchfile import save_patch_set


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rrl_edge.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("detector", ["sift", "fast"])
def test_data_build_writes_patch_files_and_manifest(tmp_path, data_root, detector):
    src = tmp_path / "vis-nir"
    for cat, ids in (("country", ("0008", "0012", "0033")), ("field", ("0013",))):
        for i in ids:
            for ext in ("_rgb.jpg", "_nir.jpg", "_nir.npy"):
                f = data_root / "vis-nir" / cat / f"{i}{ext}"
                if f.exists():
                    (src / cat).mkdir(parents=True, exist_ok=True)
                    (src / cat / f.name).symlink_to(f.resolve())
    out = tmp_path / "build"
    result = run_cli("data", "build", "--data", str(src), "--out", str(out), "--train-keypoints", "40",
                     "--eval-keypoints", "20", "--val-images", "1", "--detector", detector, "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["detector"] == detector
    assert manifest["counts"]["test"]["field"]["pairs"] == 40
    assert manifest["counts"]["val"]["country"]["images"] == 1
    assert manifest["counts"]["train"]["country"]["images"] == 2
    patches = np.load(out / "test_field_patches.npy")
    labels = np.load(out / "test_field_labels.npy")
    assert patches.shape == (40, 2, 64, 64) and patches.dtype == np.uint8 and labels.sum() == 20


def test_eval_on_a_published_format_patch_file(tmp_path, visnir_test):
    ps = visnir_test["urban"]
    save_patch_set(ps, tmp_path / "urban_patches.npy", tmp_path / "urban_labels.npy")
    result = run_cli("eval", "--data", str(tmp_path / "urban_patches.npy"), "--json", str(tmp_path / "r.json"), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    (name, cat), = report["categories"].items()
    assert cat["pairs"] == len(ps)
    assert report["mean_fpr95"] == cat["fpr95"] < 20


def test_eval_names_a_file_that_is_not_a_patch_file(tmp_path):
    bogus = tmp_path / "notes.npy"
    bogus.write_text("these are not patches")
    result = run_cli("eval", "--data", str(bogus))
    assert result.returncode == 2
    assert "notes.npy" in result.stderr and "Traceback" not in result.stderr


def test_train_refuses_an_output_folder_that_is_a_file(tmp_path, visnir_test):
    ps = visnir_test["urban"]
    save_patch_set(ps, tmp_path / "p_patches.npy", tmp_path / "p_labels.npy")
    blocker = tmp_path / "run"
    blocker.write_text("a file")
    result = run_cli("train", "--data", str(tmp_path / "p_patches.npy"), "--out-dir", str(blocker), "--max-steps", "1")
    assert result.returncode == 2
    assert "run: is a file" in result.stderr


def test_train_on_too_few_pairs_names_the_file_and_writes_nothing(tmp_path, visnir_test):
    ps = visnir_test["urban"]
    few = type(ps)(ps.name, ps.patches[:40], ps.labels[:40])
    save_patch_set(few, tmp_path / "few_patches.npy", tmp_path / "few_labels.npy")
    run_dir = tmp_path / "run"
    result = run_cli("train", "--data", str(tmp_path / "few_patches.npy"), "--out-dir", str(run_dir), "--max-steps", "1")
    assert result.returncode == 2
    assert "few_patches.npy" in result.stderr and "too few" in result.stderr and "Traceback" not in result.stderr
    assert not run_dir.exists()


def test_train_from_a_corrupt_checkpoint_leaves_no_run_folder(tmp_path, visnir_test):
    ps = visnir_test["urban"]
    save_patch_set(ps, tmp_path / "p_patches.npy", tmp_path / "p_labels.npy")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint" * 64)
    run_dir = tmp_path / "run"
    result = run_cli("train", "--data", str(tmp_path / "p_patches.npy"), "--out-dir", str(run_dir),
                     "--init-from", str(bad), "--max-steps", "1")
    assert result.returncode == 2
    assert "bad.pt is corrupt" in result.stderr and "Traceback" not in result.stderr
    assert not run_dir.exists()


def test_train_init_from_shipped_takes_the_shipped_model_for_the_data(tmp_path, data_root):
    rs = tmp_path / "roadscene"
    for name in sorted(p.name for p in (data_root / "roadscene" / "visible").glob("*.jpg"))[:10]:
        for sub in ("visible", "infrared"):
            (rs / sub).mkdir(parents=True, exist_ok=True)
            (rs / sub / name).symlink_to((data_root / "roadscene" / sub / name).resolve())
    run_dir = tmp_path / "run"
    env = {**os.environ, "RRL_EDGE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "rrl_edge.cli", "train", "--data", str(rs), "--out-dir", str(run_dir),
         "--init-from", "shipped", "--max-steps", "1", "--eval-every", "1", "--train-keypoints", "40",
         "--eval-keypoints", "20", "--quiet"],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    payload = torch.load(run_dir / "last.pt", weights_only=True)
    assert Path(payload["train_config"]["init_from"]).name == "rrlnet_joint.pt"  # the default model for any data


def test_train_on_two_data_sources_records_both(tmp_path, visnir_test):
    """`--data A --data B`: one joint model; the run records each source and validates on each."""
    files = []
    for name in ("urban", "street"):
        save_patch_set(visnir_test[name], tmp_path / f"{name}_patches.npy", tmp_path / f"{name}_labels.npy")
        files += ["--data", str(tmp_path / f"{name}_patches.npy")]
    run_dir = tmp_path / "run"
    result = run_cli("train", *files, "--out-dir", str(run_dir), "--width", "0.125", "--max-steps", "2",
                     "--eval-every", "2", "--batch", "16", "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "of urban_patches.npy + street_patches.npy" in result.stdout
    payload = torch.load(run_dir / "last.pt", weights_only=True)
    assert payload["train_pairs"] == sum(len(visnir_test[n]) for n in ("urban", "street")) - payload["val_pairs"]
    assert [Path(s["source"]).name for s in payload["data"]["sources"]] == ["urban_patches.npy", "street_patches.npy"]
    history = json.loads((run_dir / "curve.json").read_text())["history"]
    assert set(history[-1]["val_fpr95_table"]["categories"]) == {"urban_patches.npy", "street_patches.npy"}


def test_train_refuses_val_data_with_two_sources_and_cuda_without_a_gpu(tmp_path, visnir_test):
    save_patch_set(visnir_test["urban"], tmp_path / "u_patches.npy", tmp_path / "u_labels.npy")
    data = str(tmp_path / "u_patches.npy")
    both = run_cli("train", "--data", data, "--data", data, "--val-data", data, "--out-dir", str(tmp_path / "r"))
    assert both.returncode == 2 and "--val-data" in both.stderr and "Traceback" not in both.stderr
    if torch.cuda.is_available():
        pytest.skip("this PyTorch sees a GPU: the refusal of --device cuda cannot be shown here")
    cuda = run_cli("train", "--data", data, "--device", "cuda", "--out-dir", str(tmp_path / "r"))
    assert cuda.returncode == 2 and len(cuda.stderr.strip().splitlines()) == 1
    assert "--device cuda" in cuda.stderr and "no CUDA" in cuda.stderr
    assert "training on" not in cuda.stdout and not (tmp_path / "r").exists()
