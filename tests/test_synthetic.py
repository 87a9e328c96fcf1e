"""Synthetic cross-spectral pairs from real visible images: another look, the same geometry, seeded; only a
dataset's training images are rendered; the output folder is a pairs layout or nothing; bad input is one line."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from rrl_edge.data.images import read_rgb
from rrl_edge.data.layouts import detect_layout
from rrl_edge.data.synthetic import SYNTHETIC_MANIFEST, synthesize, to_gray, vis_images, write_synthetic_pairs
from rrl_edge.errors import DataError
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def rgb(data_root: Path) -> np.ndarray:
    return read_rgb(data_root / "vis-nir" / "country" / "0001_rgb.jpg")[::2, ::2].copy()


def _gradient(img: np.ndarray) -> np.ndarray:
    g = img.astype(np.float32)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


def _ncc_at(a: np.ndarray, b: np.ndarray, dx: int, dy: int, m: int = 8) -> float:
    h, w = a.shape
    x = a[m:h - m, m:w - m]
    y = b[m + dy:h - m + dy, m + dx:w - m + dx]
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


@pytest.mark.parametrize("seed", range(6))
def test_a_rendering_changes_the_look_but_its_edges_stay_where_the_visible_ones_are(rgb, seed):
    out = synthesize(rgb, np.random.default_rng(seed))
    vis = to_gray(rgb)
    assert out.shape == vis.shape and out.dtype == np.uint8
    assert abs(np.corrcoef(out.ravel(), vis.ravel())[0, 1]) < 0.99  # not the visible image again
    gv, go = _gradient(vis), _gradient(out)
    scores = {(dx, dy): _ncc_at(gv, go, dx, dy) for dx in range(-3, 4) for dy in range(-3, 4)}
    assert max(scores, key=scores.get) == (0, 0), seed  # exact geometry: edges line up at zero offset


def test_renderings_repeat_with_their_seed_and_differ_across_seeds(rgb):
    a = synthesize(rgb, np.random.default_rng(3))
    assert np.array_equal(a, synthesize(rgb, np.random.default_rng(3)))
    assert not np.array_equal(a, synthesize(rgb, np.random.default_rng(4)))


def test_a_dataset_gives_its_training_images_only(data_root, visnir_build):
    paths, origin = vis_images(data_root / "vis-nir")
    manifest = json.loads((visnir_build / "manifest.json").read_text())
    held_out = {p["vis"] for p in manifest["sources"]["pairs"] if p["split"] != "train"}
    rel = {str(p.relative_to(data_root / "vis-nir")) for p in paths}
    assert rel and all(r.startswith("country/") for r in rel) and not rel & held_out
    assert "training split" in origin


def test_the_folder_is_a_pairs_layout_that_names_its_sources_and_is_never_half_written(tmp_path, data_root):
    sources = sorted((data_root / "roadscene" / "visible").iterdir())[:3]
    out = tmp_path / "synth"
    manifest = write_synthetic_pairs(sources, out, copies=2, seed=1, progress=False)
    assert detect_layout(out) == "pairs"
    assert len(list((out / "vis").iterdir())) == len(list((out / "other").iterdir())) == 6
    assert json.loads((out / SYNTHETIC_MANIFEST).read_text()) == manifest
    assert {r["source"] for r in manifest["pairs"]} == {str(s) for s in sources}
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="not an rrl-edge synthetic folder"):
        write_synthetic_pairs(sources, user, progress=False)
    assert (user / "notes.txt").read_text() == "keep" and [p.name for p in user.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_data_synth_refuses_a_folder_without_images_in_one_line(tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    r = run_cli("data", "synth", "--from", str(empty), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and str(empty) in r.stderr
    assert not (tmp_path / "out").exists()
