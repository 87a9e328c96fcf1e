"""The patch-cutting protocol on real images: uniform keypoints cover the response range and are seeded,
near negatives stay in their distance band, and the manifest records what was cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rrl_edge.data.build import PatchConfig
from rrl_edge.data.images import list_visnir_category, load_pair
from rrl_edge.data.patches import choose_partners, detect_keypoints, make_pairs, nms_keypoints
from rrl_edge.data.protocol import KEYPOINT_SAMPLINGS, NEAR_MAX_PX, NEAR_MIN_PX, NEGATIVE_RULES
from rrl_edge.errors import DataError


@pytest.fixture(scope="module")
def field(data_root: Path):
    """field 0013: an unwarped VIS-NIR pair with ~2000 keypoints, many of them weak (grass, sky)."""
    return load_pair(next(p for p in list_visnir_category(data_root / "vis-nir" / "field") if p.pair_id == "0013"))


def _ranks(all_kps: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    index = {tuple(p): i for i, p in enumerate(all_kps)}
    return np.array([index[tuple(p)] for p in chosen])


def test_uniform_sampling_is_seeded_and_covers_the_response_range(field) -> None:
    all_kps = nms_keypoints(field.vis, field.valid, None)
    n = len(all_kps)
    assert n > 1000, n
    strongest = detect_keypoints(field.vis, field.valid, 96, sampling="strongest")
    np.testing.assert_array_equal(_ranks(all_kps, strongest), np.arange(96))  # the top of the ranking only

    a = detect_keypoints(field.vis, field.valid, 96, sampling="uniform", rng=np.random.default_rng(7))
    b = detect_keypoints(field.vis, field.valid, 96, sampling="uniform", rng=np.random.default_rng(7))
    c = detect_keypoints(field.vis, field.valid, 96, sampling="uniform", rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert len(a) == len(c) == 96 and not np.array_equal(a, c)
    r = _ranks(all_kps, a) / n  # relative response rank, 0 = strongest
    assert r.min() < 0.1 and r.max() > 0.9, (r.min(), r.max())
    assert 0.3 < (r > 0.5).mean() < 0.7  # about half from the weaker half of the ranking
    assert np.all(np.diff(_ranks(all_kps, a)) > 0)  # kept in strength order


def test_uniform_takes_all_when_fewer_than_asked(field) -> None:
    all_kps = nms_keypoints(field.vis, field.valid, None)
    got = detect_keypoints(field.vis, field.valid, len(all_kps) + 50, sampling="uniform", rng=np.random.default_rng(0))
    np.testing.assert_array_equal(got, all_kps)
    with pytest.raises(ValueError, match="seeded rng"):
        detect_keypoints(field.vis, field.valid, 10, sampling="uniform")
    with pytest.raises(ValueError, match="unknown keypoint sampling"):
        detect_keypoints(field.vis, field.valid, 10, sampling="best")


def test_negative_bands(field) -> None:
    c = detect_keypoints(field.vis, field.valid, 300, sampling="uniform", rng=np.random.default_rng(0))
    pool = nms_keypoints(field.vis, field.valid, None)
    dist = {}
    for rule in ("far", "near", "mixed"):
        p = choose_partners(c, np.random.default_rng(1), rule, pool)
        ok = p[:, 0] >= 0
        assert ok.mean() > 0.95, rule
        dist[rule] = np.abs(c[ok] - p[ok]).max(axis=1)
        assert dist[rule].min() >= 64, rule
    assert dist["near"].max() <= NEAR_MAX_PX and dist["near"].min() >= NEAR_MIN_PX
    assert np.median(dist["far"]) > 2 * NEAR_MAX_PX  # far negatives are mostly much farther
    near_share = (dist["mixed"] <= NEAR_MAX_PX).mean()
    assert 0.4 < near_share < 0.8, near_share  # half near (plus far draws that happen to land near)


def test_make_pairs_same_count_per_image_and_deterministic(field) -> None:
    def cut(seed: int, negatives: str):
        return make_pairs(field.vis, field.other, field.valid, 96, np.random.default_rng(seed),
                          sampling="uniform", negatives=negatives)

    p1, l1 = cut(3, "near")
    p2, l2 = cut(3, "near")
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(l1, l2)
    assert len(l1) == 192 and l1.sum() == 96  # every sampled keypoint found a near partner on this image
    pf, _ = cut(3, "far")
    np.testing.assert_array_equal(pf[0::2], p1[0::2])  # same positives: the protocol only changes the negatives
    assert not np.array_equal(pf[1::2, 1], p1[1::2, 1])


def test_registry_is_what_the_cli_offers() -> None:
    from rrl_edge.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["eval", "--keypoint-sampling", "strongest", "--negatives", "near"])
    assert (args.keypoint_sampling, args.negatives) == ("strongest", "near")
    for bad in (["eval", "--keypoint-sampling", "random"], ["eval", "--negatives", "close"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    assert set(KEYPOINT_SAMPLINGS) == {"uniform", "strongest"} and {"far", "near"} <= set(NEGATIVE_RULES)
    with pytest.raises(DataError, match="PatchConfig.negatives.*unknown negatives 'close'"):
        PatchConfig(negatives="close").check()


def test_default_protocol_and_strongest_reproduces_old_cut() -> None:
    d = PatchConfig()
    assert d.protocol("test")["keypoint_sampling"] == "uniform" and d.protocol("test")["negatives"] == "far"
    assert d.protocol("val") == d.protocol("test")
    assert d.protocol("train")["negatives"] == "mixed" and d.protocol("train")["keypoints_per_image"] > 600
