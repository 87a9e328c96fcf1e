"""Real-data patch pipeline on a small subset of the shared data (symlinks, nothing copied).

Subset: country 0008, 0012, 0033 (well registered) and 0015 (the NIR shot is framed differently:
must be dropped), field 0013 (kept) and 0014 (NIR off by 2 px: must be corrected).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
from PIL import Image

from rrl_edge.data import build as build_mod
from rrl_edge.data.alignment import apply_shift, check_alignment, edge_correlation
from rrl_edge.data.build import (
    PatchConfig,
    build_dataset,
    dataset_key,
    default_data_root,
    detect_layout,
    ensure_dataset,
    load_split,
    read_manifest,
)
from rrl_edge.data.images import list_visnir_category, load_pair, read_gray
from rrl_edge.data.patches import detect_keypoints, negative_partners
from rrl_edge.errors import DataError

COUNTRY = ("0008", "0012", "0033", "0015")
FIELD = ("0013", "0014")
ROADSCENE = ("FLIR_00006.jpg", "FLIR_00018.jpg", "FLIR_00060.jpg", "FLIR_00122.jpg")
CFG = PatchConfig(train_keypoints_per_image=48, eval_keypoints_per_image=24, val_images=1, seed=0)


@pytest.fixture(scope="module")
def shared_data() -> Path:
    try:
        root = default_data_root()
    except DataError as e:
        pytest.skip(f"real data not available: {e}")
    if not (root / "vis-nir" / "country").is_dir() or not (root / "roadscene" / "visible").is_dir():
        pytest.skip(f"real data not available: {root} has no vis-nir/country or roadscene/visible")
    return root


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src.resolve())


@pytest.fixture(scope="module")
def subset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("visnir") / "vis-nir"
    for cat, ids, exts in (("country", COUNTRY, ("_rgb.jpg", "_nir.jpg")), ("field", FIELD, ("_rgb.jpg", "_nir.jpg", "_nir.npy"))):
        for i in ids:
            for ext in exts:
                _link(shared_data / "vis-nir" / cat / f"{i}{ext}", d / cat / f"{i}{ext}")
    return d


@pytest.fixture(scope="module")
def built(subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "a"
    build_dataset(subset, out, CFG, progress=False)
    return out


def _file_digests(d: Path) -> Dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*.npy"))}


def _edge_ncc(a: np.ndarray, b: np.ndarray) -> float:
    def edges(p: np.ndarray) -> np.ndarray:
        f = cv2.GaussianBlur(p.astype(np.float32), (0, 0), 0.7)
        g = cv2.magnitude(cv2.Sobel(f, cv2.CV_32F, 1, 0), cv2.Sobel(f, cv2.CV_32F, 0, 1))
        return g - g.mean()

    ea, eb = edges(a), edges(b)
    den = float(np.sqrt((ea * ea).sum() * (eb * eb).sum()))
    return float((ea * eb).sum() / den) if den > 0 else 0.0


# ------------------------------------------------------------------------------------------ the build


def test_shapes_balance_and_split_keys(built: Path) -> None:
    assert detect_layout(build_mod.read_manifest(built)["sources"]["data_dir"]) == "vis-nir"
    splits = {s: load_split(built, s) for s in ("train", "val", "test")}
    assert list(splits["train"]) == ["country"] and list(splits["val"]) == ["country"]
    assert list(splits["test"]) == ["field"]
    for sets in splits.values():
        for ps in sets.values():
            assert ps.patches.dtype == np.uint8 and ps.patches.shape[1:] == (2, 64, 64)
            assert ps.labels.dtype == np.uint8 and ps.labels.shape == (len(ps),)
            assert len(ps) > 0 and int(ps.labels.sum()) * 2 == len(ps)  # exactly 50/50
            np.testing.assert_array_equal(ps.labels[0::2], 1)  # interleaved positive, negative
            np.testing.assert_array_equal(ps.patches[0::2, 0], ps.patches[1::2, 0])  # same VIS patch
    assert len(splits["val"]["country"]) <= 2 * CFG.eval_keypoints_per_image
    assert len(splits["train"]["country"]) > 2 * CFG.eval_keypoints_per_image


def test_manifest_counts_and_decisions(built: Path) -> None:
    m = json.loads((built / "manifest.json").read_text())
    assert m["format_version"] == build_mod.DATA_FORMAT_VERSION and m["seed"] == 0
    assert m["config"]["train_keypoints_per_image"] == 48 and m["layout"] == "vis-nir"
    pairs = {f"{p['category']}/{p['pair_id']}": p for p in m["sources"]["pairs"]}
    assert set(pairs) == {f"country/{i}" for i in COUNTRY} | {f"field/{i}" for i in FIELD}
    assert pairs["country/0015"]["decision"] == "dropped"
    assert pairs["country/0015"]["positives"] == 0
    assert pairs["field/0014"]["decision"] == "corrected" and (pairs["field/0014"]["dx"], pairs["field/0014"]["dy"]) == (2, 0)
    assert pairs["field/0014"]["applied_shift"] == [2, 0]
    assert pairs["field/0013"]["decision"] == "kept" and pairs["field/0013"]["unwarp_applied"] is True
    assert pairs["country/0008"]["unwarp_applied"] is False
    for p in pairs.values():
        assert {"peak", "second", "zero", "reason", "split"} <= set(p)
    assert [p["split"] for p in pairs.values() if p["category"] == "country" and p["decision"] != "dropped"].count("val") == 1
    for split, cats in m["counts"].items():
        for cat, c in cats.items():
            ps = load_split(built, split)[cat]
            assert c["pairs"] == len(ps) and c["positives"] == c["negatives"] == len(ps) // 2
            assert c["images"] == sum(
                1 for p in pairs.values() if p["split"] == split and p["category"] == cat and p["decision"] != "dropped"
            )
    assert m["counts"]["train"]["country"]["images_dropped"] + m["counts"]["val"]["country"]["images_dropped"] == 1
    assert m["alignment_summary"]["field"] == {"kept": 1, "corrected": 1, "dropped": 0}
    for split in ("val", "test"):  # the protocol each split was cut with
        assert m["protocol"][split]["keypoint_sampling"] == "uniform" and m["protocol"][split]["negatives"] == "far"
        assert m["protocol"][split]["keypoints_per_image"] == CFG.eval_keypoints_per_image
    assert m["protocol"]["train"]["negatives"] == "mixed" and m["protocol"]["train"]["keypoints_per_image"] == 48


def test_deterministic_and_seed_dependent(subset: Path, built: Path, tmp_path: Path) -> None:
    build_dataset(subset, tmp_path / "again", CFG, progress=False)
    assert _file_digests(tmp_path / "again") == _file_digests(built)
    build_dataset(subset, tmp_path / "seed1", PatchConfig(**{**CFG.__dict__, "seed": 1}), progress=False)
    other = _file_digests(tmp_path / "seed1")
    assert set(other) == set(_file_digests(built))
    assert other != _file_digests(built)


def test_strongest_protocol_is_recorded_and_changes_only_its_splits(subset: Path, built: Path, tmp_path: Path) -> None:
    m = build_dataset(subset, tmp_path / "strong", PatchConfig(**{**CFG.__dict__, "keypoint_sampling": "strongest"}),
                      progress=False)
    assert m["protocol"]["test"]["keypoint_sampling"] == "strongest" and m["protocol"]["train"]["keypoint_sampling"] == "uniform"
    a, b = _file_digests(tmp_path / "strong"), _file_digests(built)
    assert a["train_country_patches.npy"] == b["train_country_patches.npy"]
    assert a["test_field_patches.npy"] != b["test_field_patches.npy"]


def test_positives_really_aligned(built: Path) -> None:
    """Edge correlation between the two patches: clearly higher for positives than for negatives."""
    for split, cat in (("train", "country"), ("test", "field")):
        ps = load_split(built, split)[cat]
        ncc = np.array([_edge_ncc(p[0], p[1]) for p in ps.patches])
        pos, neg = ncc[ps.labels == 1].mean(), ncc[ps.labels == 0].mean()
        assert pos > 0.3 and neg < 0.15 and pos - neg > 0.25, (split, cat, pos, neg)


def test_rebuild_replaces_own_build_but_not_foreign_folder(subset: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    build_dataset(subset, out, CFG, progress=False)
    build_dataset(subset, out, CFG, progress=False)  # replacing a complete build is fine
    assert read_manifest(out)["layout"] == "vis-nir"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing"):
        build_dataset(subset, foreign, CFG, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def test_ensure_dataset_caches(subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = ensure_dataset(subset, CFG, cache_root=tmp_path, progress=False)
    assert d.parent == tmp_path and d.name == f"vis-nir-{dataset_key(subset, CFG)}"
    assert (d / "manifest.json").is_file()

    def no_build(*a, **k):
        raise AssertionError("rebuilt although a complete build exists")

    monkeypatch.setattr(build_mod, "build_dataset", no_build)
    assert ensure_dataset(subset, CFG, cache_root=tmp_path, progress=False) == d
    monkeypatch.setenv("RRL_EDGE_CACHE", str(tmp_path))
    assert ensure_dataset(subset, CFG, progress=False) == d
    assert dataset_key(subset, PatchConfig(**{**CFG.__dict__, "seed": 3})) != dataset_key(subset, CFG)


def test_roadscene_subset(shared_data: Path, tmp_path: Path) -> None:
    d = tmp_path / "rs"
    for name in ROADSCENE:
        for sub in ("visible", "infrared"):
            _link(shared_data / "roadscene" / sub / name, d / sub / name)
    assert detect_layout(d) == "roadscene"
    m = build_dataset(d, tmp_path / "out", CFG, progress=False)
    for split in ("train", "val", "test"):
        assert list(load_split(tmp_path / "out", split)) == ["roadscene"]
    assert sum(c["roadscene"]["images"] + c["roadscene"]["images_dropped"] for c in m["counts"].values()) == 4
    decisions = {p["pair_id"]: p["decision"] for p in m["sources"]["pairs"]}
    assert sorted(decisions) == sorted(n[:-4] for n in ROADSCENE)
    assert decisions["FLIR_00006"] == "corrected"  # LWIR off by 3 px (peak 0.23, next 0.0)


def test_train_images_draws_nested_training_subsets_and_leaves_val_and_test_alone(shared_data: Path, tmp_path: Path) -> None:
    """`--train-images N` (the fine-tuning curve): N training images, the smaller draw inside the larger one,
    the same validation and test pairs whatever N is; the default key is unchanged by the option's existence."""
    d = tmp_path / "rs"
    names = sorted(p.name for p in (shared_data / "roadscene" / "visible").glob("*.jpg"))[:16]
    for name in names:
        for sub in ("visible", "infrared"):
            _link(shared_data / "roadscene" / sub / name, d / sub / name)
    train_ids, digests = {}, {}
    for n in (2, 5):
        cfg = PatchConfig(train_keypoints_per_image=16, eval_keypoints_per_image=8, seed=0, train_images=n)
        m = build_dataset(d, tmp_path / f"out{n}", cfg, progress=False)
        assert m["counts"]["train"]["roadscene"]["images"] == n and m["config"]["train_images"] == n
        train_ids[n] = {p["pair_id"] for p in m["sources"]["pairs"] if p["split"] == "train" and p["positives"]}
        digests[n] = {k: v for k, v in _file_digests(tmp_path / f"out{n}").items() if not k.startswith("train_")}
    assert len(train_ids[2]) == 2 and train_ids[2] < train_ids[5]
    assert digests[2] == digests[5]
    plain = PatchConfig(train_keypoints_per_image=16, eval_keypoints_per_image=8, seed=0)
    assert "train_images" not in plain.key() and dataset_key(d, plain) != dataset_key(d, PatchConfig(
        train_keypoints_per_image=16, eval_keypoints_per_image=8, seed=0, train_images=5))
    with pytest.raises(DataError, match="train_images"):
        PatchConfig(train_images=0).check()


# ------------------------------------------------------------------------------------- alignment pieces


def test_unwarp_raises_edge_correlation(shared_data: Path) -> None:
    pair = next(p for p in list_visnir_category(shared_data / "vis-nir" / "field") if p.pair_id == "0013")
    vis, raw = read_gray(pair.vis_path), read_gray(pair.other_path)
    lp = load_pair(pair)
    before, after = edge_correlation(vis, raw), edge_correlation(lp.vis, lp.other, lp.valid)
    assert lp.unwarped and before < 0.1 and after > 0.6, (before, after)
    assert 0.5 < lp.valid.mean() < 1.0  # the corners outside the warped NIR are masked


def test_shift_search_recovers_artificial_shift(shared_data: Path) -> None:
    pair = next(p for p in list_visnir_category(shared_data / "vis-nir" / "country") if p.pair_id == "0012")
    lp = load_pair(pair)
    assert check_alignment(lp.vis, lp.other, lp.valid).decision == "kept"
    # NIR content moved by (+3, -2): VIS (x, y) is now at NIR (x + 3, y - 2)
    moved, moved_valid = apply_shift(lp.other, lp.valid, -3, 2)
    a = check_alignment(lp.vis, moved, moved_valid)
    assert (a.decision, a.dx, a.dy) == ("corrected", 3, -2)
    back, back_valid = apply_shift(moved, moved_valid, a.dx, a.dy)
    np.testing.assert_array_equal(back[back_valid], lp.other[back_valid])


def test_keypoints_and_negatives(shared_data: Path) -> None:
    lp = load_pair(next(p for p in list_visnir_category(shared_data / "vis-nir" / "field") if p.pair_id == "0013"))
    for det in ("sift", "fast"):
        c = detect_keypoints(lp.vis, lp.valid, 200, 64, 8, det)
        assert 0 < len(c) <= 200
        np.testing.assert_array_equal(c, detect_keypoints(lp.vis, lp.valid, 200, 64, 8, det))
        for x, y in c:  # window wholly inside the image and the valid mask
            assert lp.valid[y - 32 : y + 32, x - 32 : x + 32].all() and lp.valid[y - 32 : y + 32, x - 32 : x + 32].shape == (64, 64)
        dist = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1)) + np.eye(len(c)) * 1e9
        assert dist.min() >= 8
    partner = negative_partners(c, np.random.default_rng(0), 64)
    ok = partner >= 0
    assert ok.any() and np.abs(c[ok] - c[partner[ok]]).max(axis=1).min() >= 64


# ------------------------------------------------------------------------------------------- bad inputs


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere.*not found"):
        detect_layout(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*empty"):
        detect_layout(tmp_path / "empty")
    (tmp_path / "odd" / "stuff").mkdir(parents=True)
    with pytest.raises(DataError, match="odd.*unknown data layout"):
        detect_layout(tmp_path / "odd")
    (tmp_path / "v" / "country").mkdir(parents=True)
    with pytest.raises(DataError, match="country.*no image pairs"):
        build_dataset(tmp_path / "v", tmp_path / "out", CFG, progress=False)
    (tmp_path / "r" / "visible").mkdir(parents=True)
    (tmp_path / "r" / "infrared").mkdir()
    with pytest.raises(DataError, match="visible.*no images"):
        build_dataset(tmp_path / "r", tmp_path / "out", CFG, progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="split 'dev'"):
        load_split(tmp_path, "dev")
    with pytest.raises(DataError, match="not a complete patch build"):
        load_split(tmp_path, "train")


def test_pair_of_different_sizes(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "vis-nir" / "country"
    d = tmp_path / "country"
    d.mkdir()
    _link(src / "0008_rgb.jpg", d / "0008_rgb.jpg")
    nir = Image.open(src / "0008_nir.jpg")
    nir.crop((0, 0, nir.width - 10, nir.height)).save(d / "0008_nir.jpg")  # written to tmp only
    pair = list_visnir_category(d)[0]
    with pytest.raises(DataError, match="different sizes.*0008_rgb.jpg.*0008_nir.jpg"):
        load_pair(pair)


def test_corrupt_and_missing_images(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "vis-nir" / "country"
    d = tmp_path / "country"
    d.mkdir()
    _link(src / "0008_rgb.jpg", d / "0008_rgb.jpg")
    (d / "0008_nir.jpg").write_bytes((src / "0008_nir.jpg").read_bytes()[:2000])  # truncated jpeg
    with pytest.raises(DataError, match="0008_nir.jpg.*cannot read"):
        load_pair(list_visnir_category(d)[0])
    (d / "0008_nir.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="0008_nir.jpg.*cannot read"):
        load_pair(list_visnir_category(d)[0])
    _link(src / "0012_rgb.jpg", d / "0012_rgb.jpg")
    with pytest.raises(DataError, match="0012_rgb.jpg.*0012_nir.jpg is missing"):
        list_visnir_category(d)


def test_bad_warp_matrix(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "vis-nir" / "field"
    d = tmp_path / "field"
    for ext in ("_rgb.jpg", "_nir.jpg"):
        _link(src / f"0013{ext}", d / f"0013{ext}")
    np.save(d / "0013_nir.npy", np.eye(3))
    with pytest.raises(DataError, match="0013_nir.npy.*2x3"):
        load_pair(list_visnir_category(d)[0])


def test_default_data_root_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRL_EDGE_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.setenv("RRL_EDGE_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataError, match="RRL_EDGE_DATA.*gone"):
        default_data_root()
