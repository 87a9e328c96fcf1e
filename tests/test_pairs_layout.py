"""Bring your own pairs: a folder with vis/ and other/ holding registered images under the same names goes
through data build, eval and run unchanged; its bad inputs get one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rrl_edge.checkpoint import shipped_for_layout
from rrl_edge.cli import main
from rrl_edge.data.build import PatchConfig, build_dataset, detect_layout
from rrl_edge.data.layouts import LAYOUTS
from rrl_edge.data.store import load_split, read_manifest
from rrl_edge.errors import DataError

COUNTRY = ("0008", "0012", "0033")  # well-registered VIS-NIR pairs, renamed as a user's camera would name them


def _pairs_folder(data_root: Path, root: Path) -> Path:
    """Three real pairs, the same 480x360 crop of both images (written to tmp only: small, so the test is fast)."""
    d = root / "mycam"
    (d / "vis").mkdir(parents=True)
    (d / "other").mkdir()
    for i, pid in enumerate(COUNTRY):
        for sub, suffix in (("vis", "rgb"), ("other", "nir")):
            with Image.open(data_root / "vis-nir" / "country" / f"{pid}_{suffix}.jpg") as im:
                im.crop((200, 150, 680, 510)).save(d / sub / f"frame{i}.png")
    return d


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    c = tmp_path / "cache"
    monkeypatch.setenv("RRL_EDGE_CACHE", str(c))
    return c


def test_layout_registry_and_shipped_model() -> None:
    assert list(LAYOUTS) == ["roadscene", "pairs", "vis-nir"]
    for layout in ("pairs", "roadscene", "vis-nir", "patch-file"):  # the joint model is the default for any data
        assert shipped_for_layout(layout).name == "rrlnet_joint.pt", layout


def test_pairs_folder_build(data_root: Path, tmp_path: Path, cache: Path, capsys) -> None:
    d = _pairs_folder(data_root, tmp_path)
    assert detect_layout(d) == "pairs"
    out = tmp_path / "build"
    assert main(["data", "build", "--data", str(d), "--out", str(out), "--train-keypoints", "200", "--quiet"]) == 0
    m = read_manifest(out)
    assert m["layout"] == "pairs"
    splits = {p["pair_id"]: p["split"] for p in m["sources"]["pairs"]}
    assert sorted(splits.values()) == ["test", "train", "val"]  # a fixed split by image
    assert m["protocol"]["test"]["keypoint_sampling"] == "uniform" and m["protocol"]["train"]["negatives"] == "mixed"
    settings = PatchConfig().split_settings()
    plan = LAYOUTS["pairs"].plan(d, settings)
    assert {p.pair_id: s for p, s in plan} == splits == {p.pair_id: s for p, s in LAYOUTS["pairs"].plan(d, settings)}
    test = load_split(out, "test")["pairs"]
    n = len(test)
    assert 100 <= n <= 192 and test.labels.sum() * 2 == n



def test_pairs_folder_all_test(data_root: Path, tmp_path: Path) -> None:
    """--test-fraction 1: every pair of a folder is test (a folder only scored), so one pair is enough."""
    d = _pairs_folder(data_root, tmp_path)
    settings = PatchConfig(roadscene_test_fraction=1.0).split_settings()
    assert [s for _, s in LAYOUTS["pairs"].plan(d, settings)] == ["test"] * len(COUNTRY)
    for i in (1, 2):
        for sub in ("vis", "other"):
            (d / sub / f"frame{i}.png").unlink()
    assert [s for _, s in LAYOUTS["pairs"].plan(d, settings)] == ["test"]
    with pytest.raises(DataError, match="need at least 3"):
        LAYOUTS["pairs"].plan(d, PatchConfig().split_settings())
    with pytest.raises(DataError, match=r"must be in \(0, 1\]"):
        PatchConfig(roadscene_test_fraction=1.5).check()


@pytest.mark.slow  # scoring with the shipped model: ~30 s on 2 busy cores
def test_pairs_folder_eval_and_run(data_root: Path, tmp_path: Path, cache: Path, capsys) -> None:
    d = _pairs_folder(data_root, tmp_path)
    out = tmp_path / "build"
    assert main(["data", "build", "--data", str(d), "--out", str(out), "--train-keypoints", "200", "--quiet"]) == 0
    n = len(load_split(out, "test")["pairs"])
    report = tmp_path / "eval.json"
    args = ["--data", str(d), "--train-keypoints", "200", "--quiet"]
    assert main(["eval", *args, "--json", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["checkpoint"].endswith("rrlnet_joint.pt") and list(r["categories"]) == ["pairs"]
    assert r["categories"]["pairs"]["pairs"] == n and r["protocol"]["keypoint_sampling"] == "uniform"
    assert r["mean_fpr95"] < 20  # the shipped joint model on a crop of country pairs (a new camera's stand-in)
    assert main(["eval", *args, "--negatives", "near", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["protocol"]["negatives"] == "near"
    assert main(["eval", *args, "--test-fraction", "1", "--json", str(report)]) == 0  # every pair of the folder
    every = json.loads(report.read_text())["categories"]["pairs"]["pairs"]
    assert every > 2 * n and every % 2 == 0
    capsys.readouterr()
    assert main(["train", "--data", str(d), "--test-fraction", "1", "--max-steps", "1", "--out-dir",
                 str(tmp_path / "t"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'train' split has no patches" in err and "--test-fraction 1" in err and not (tmp_path / "t").exists()

    scores = tmp_path / "s.npy"
    capsys.readouterr()
    assert main(["run", "--engine", str(shipped_for_layout("pairs")), "--data", str(out), "--out", str(scores)]) == 0
    assert np.load(scores).shape == (n,)


def _fail(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_pairs_folder_bad_inputs(data_root: Path, tmp_path: Path, cache: Path, capsys) -> None:
    d = _pairs_folder(data_root, tmp_path)
    (d / "vis" / "lonely.png").symlink_to((d / "vis" / "frame0.png").resolve())
    err = _fail(["data", "build", "--data", str(d), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert "lonely.png: no partner image" in err and str(d / "other" / "lonely.png") in err
    (d / "vis" / "lonely.png").unlink()
    (d / "other" / "extra.png").write_bytes(b"")
    assert "extra.png: no partner image" in _fail(["data", "build", "--data", str(d), "--quiet"], capsys)
    (d / "other" / "extra.png").unlink()

    nir = Image.open(d / "other" / "frame1.png")
    (d / "other" / "frame1.png").unlink()
    nir.crop((0, 0, nir.width - 8, nir.height)).save(d / "other" / "frame1.png")  # written to tmp only
    err = _fail(["eval", "--data", str(d), "--quiet"], capsys)
    assert "different sizes" in err and "frame1.png" in err
    assert not (tmp_path / "o").exists()

    flat = tmp_path / "flat"
    for sub in ("vis", "other"):
        (flat / sub).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((120, 160), 90 + i, np.uint8)).save(flat / sub / f"{i}.png")
    err = _fail(["data", "build", "--data", str(flat), "--out", str(tmp_path / "f"), "--quiet"], capsys)
    assert str(flat) in err and "no usable" in err
    with pytest.raises(DataError, match="need at least 3"):
        for p in (flat / "vis" / "2.png", flat / "other" / "2.png"):
            p.unlink()
        build_dataset(flat, tmp_path / "f", progress=False)
    assert not (tmp_path / "f").exists()
