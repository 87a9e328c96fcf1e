"""rrl-edge register-folder: two unaligned cameras' pairs in, a registered ``pairs`` folder out that the patch
builder, eval and train read (warp/ matrices, untouched images); unsure pairs left out with the reason; bad input
in one line with exit 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from rrl_edge.cli import main
from rrl_edge.data.build import PatchConfig, build_dataset
from rrl_edge.data.images import load_pair, read_gray
from rrl_edge.data.layouts import LAYOUTS
from rrl_edge.data.store import load_split
from rrl_edge.errors import DataError
from rrl_edge.registration import geometry as geo
from rrl_edge.registration.synthetic import synthetic_pair

NAME = "FLIR_00060.jpg"  # a RoadScene pair the dataset aligns well


def _unaligned(data_root: Path, root: Path, seeds=(3, 5)) -> tuple:
    """A user's folder: the same VIS frame with its thermal partner moved by a seeded random similarity, once per
    seed (written to tmp only); returns (folder, {stem: true affine VIS -> other})."""
    d = root / "mycams"
    (d / "vis").mkdir(parents=True)
    (d / "other").mkdir()
    vis = read_gray(data_root / "roadscene" / "visible" / NAME)
    ir = read_gray(data_root / "roadscene" / "infrared" / NAME)
    truth = {}
    for seed in seeds:
        other, g = synthetic_pair(vis, ir, seed)
        cv2.imwrite(str(d / "vis" / f"frame{seed}.png"), vis)
        cv2.imwrite(str(d / "other" / f"frame{seed}.png"), other)
        truth[f"frame{seed}"] = g
    return d, truth


def _one_line_error(rc: int, capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_unaligned_pairs_become_a_folder_the_builder_reads(data_root, tmp_path, capsys, monkeypatch):
    """Both pairs registered within 3 px of the truth, kept with their warp and untouched images; the builder
    unwarps them (black fill outside the moved image is not content) and cuts positives from them."""
    monkeypatch.setenv("RRL_EDGE_CACHE", str(tmp_path / "cache"))
    src, truth = _unaligned(data_root, tmp_path)
    out = tmp_path / "registered"
    assert main(["register-folder", str(src), "--out-dir", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 of 2 pairs registered" in printed and f"rrl-edge eval --data {out}" in printed
    manifest = json.loads((out / "REGISTRATION.json").read_text())
    assert manifest["counts"] == {"sure": 2, "unsure": 0, "failed": 0}
    h, w = read_gray(src / "vis" / "frame3.png").shape
    for stem, g in truth.items():
        a = np.load(out / "warp" / f"{stem}.npy")
        assert geo.corner_error(a, g, w, h) < 3.0, stem
        assert (out / "other" / f"{stem}.png").read_bytes() == (src / "other" / f"{stem}.png").read_bytes()
        assert (out / "overlays" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    plan = LAYOUTS["pairs"].plan(out, PatchConfig(roadscene_test_fraction=1.0).split_settings())
    loaded = load_pair(plan[0][0])
    assert loaded.unwarped and 0.3 < loaded.valid.mean() < 0.95  # the moved image's fill is masked out
    built = tmp_path / "build"
    build_dataset(out, built, PatchConfig(roadscene_test_fraction=1.0), progress=False)
    test = load_split(built, "test")["pairs"]
    assert len(test) >= 60 and test.labels.sum() * 2 == len(test)
    # a matched window really matches: positives are far closer in gradient structure than negatives
    p = test.patches.astype(np.float32)
    diff = np.abs(np.diff(p, axis=1)).mean(axis=(1, 2, 3))
    assert diff[test.labels == 1].mean() < diff[test.labels == 0].mean()


def test_a_folder_with_warps_needs_one_per_pair(data_root, tmp_path):
    src, truth = _unaligned(data_root, tmp_path, seeds=(3, 5, 7))
    (src / "warp").mkdir()
    for stem, g in list(truth.items())[:2]:
        np.save(src / "warp" / f"{stem}.npy", g)
    with pytest.raises(DataError, match=r"frame7\.npy: warp matrix missing"):
        LAYOUTS["pairs"].plan(src, PatchConfig().split_settings())


def test_pairs_the_network_does_not_vouch_for_are_left_out(data_root, tmp_path, capsys):
    """An engine that scores everything 0.99 makes every answer unsure: nothing is kept (exit 1, one line), the
    manifest says why for each pair, the overlays are there to look at; a second run replaces the first."""
    from tests.test_register import _constant_onnx

    src, _ = _unaligned(data_root, tmp_path)
    out = tmp_path / "registered"
    engine = str(_constant_onnx(tmp_path / "const.onnx"))
    for _ in range(2):
        rc = main(["register-folder", str(src), "--out-dir", str(out), "--engine", engine, "--quiet"])
        captured = capsys.readouterr()
        assert rc == 1 and "no pair registered surely" in captured.err and len(captured.err.strip().splitlines()) == 1
        assert captured.out.count("unsure ") == 2
    manifest = json.loads((out / "REGISTRATION.json").read_text())
    assert manifest["counts"]["sure"] == 0
    assert all("does not single out" in row["reason"] for row in manifest["pairs"])
    assert not any((out / "vis").iterdir()) and len(list((out / "overlays").iterdir())) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folder left


def test_bad_folders_exit_2_in_one_line_and_write_nothing(data_root, tmp_path, capsys):
    src, _ = _unaligned(data_root, tmp_path)
    out = tmp_path / "registered"
    (src / "vis" / "lonely.png").write_bytes((src / "vis" / "frame3.png").read_bytes())
    err = _one_line_error(main(["register-folder", str(src), "--out-dir", str(out), "--quiet"]), capsys)
    assert "lonely.png: no partner image" in err
    (src / "vis" / "lonely.png").unlink()
    (src / "other" / "frame5.png").write_bytes(b"not an image")
    (src / "other" / "frame3.png").unlink()
    (src / "vis" / "frame3.png").unlink()
    err = _one_line_error(main(["register-folder", str(src), "--out-dir", str(out), "--quiet"]), capsys)
    assert "frame5.png" in err and "cannot read image" in err
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    err = _one_line_error(main(["register-folder", str(src), "--out-dir", str(mine), "--quiet"]), capsys)
    assert "refusing to replace it" in err and (mine / "notes.txt").read_text() == "a user's file"
    err = _one_line_error(main(["register-folder", str(src), "--out-dir", str(src / "reg"), "--quiet"]), capsys)
    assert "inside the input folder" in err
