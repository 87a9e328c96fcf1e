"""Modality randomization on real VIS-NIR patches: each family redraws appearance, none moves a pixel, the same
seed gives the same batch, and a misspelt family or a changed setting on --resume is refused."""

import numpy as np
import pytest
import torch

from rrl_edge.contracts import to_unit_float
from rrl_edge.errors import CheckpointError, InputError
from rrl_edge.training.modality import FAMILIES, ModalityConfig, parse_families, randomize_modality

PIXELWISE = ("curve", "remap", "invert", "field")  # the output at a pixel depends on that pixel alone


@pytest.fixture(scope="module")
def real_pairs(visnir_test) -> torch.Tensor:
    return torch.from_numpy(to_unit_float(np.concatenate([visnir_test[c].patches[:32] for c in ("field", "urban")])))


def _run(x: torch.Tensor, families, seed: int = 0, prob: float = 1.0) -> torch.Tensor:
    return randomize_modality(x, torch.Generator().manual_seed(seed), ModalityConfig(tuple(families), prob))


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_redraws_every_patch_within_range_and_repeats_with_its_seed(real_pairs, family):
    out = _run(real_pairs, [family])
    assert out.shape == real_pairs.shape and out.dtype == real_pairs.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    changed = (out - real_pairs).abs().flatten(2).amax(-1) > 1e-3
    assert float(changed.float().mean()) > 0.95, family
    assert torch.equal(out, _run(real_pairs, [family]))
    if family != "invert":  # the one family with nothing to draw
        assert not torch.equal(out, _run(real_pairs, [family], seed=1))


def test_nothing_is_applied_at_probability_zero_or_without_families(real_pairs):
    assert torch.equal(_run(real_pairs, FAMILIES, prob=0.0), real_pairs)
    assert torch.equal(_run(real_pairs, []), real_pairs)


def test_curve_keeps_each_patchs_intensity_order_and_invert_reverses_it(real_pairs):
    out = _run(real_pairs, ["curve"]).flatten(2)
    order = real_pairs.flatten(2).argsort(-1)
    assert bool((torch.gather(out, 2, order).diff(dim=-1) >= -1e-6).all())
    assert torch.allclose(_run(real_pairs, ["invert"]), 1.0 - real_pairs)


def test_remap_reverses_intensity_order_in_some_patches(real_pairs):
    """Non-monotone: across a batch some patches come out anti-correlated with their input (VIS vs LWIR)."""
    out = _run(real_pairs, ["remap"]).flatten(1).numpy()
    inp = real_pairs.flatten(1).numpy()
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(inp, out) if a.std() > 0.02]
    assert min(corr) < -0.3 and max(corr) > 0.3


@pytest.mark.parametrize("family", PIXELWISE)
def test_pixelwise_families_move_no_pixel(real_pairs, family):
    """Change a 16x16 block of every input: with the same draws the output changes inside the block only."""
    edited = real_pairs.clone()
    edited[..., 24:40, 24:40] = 1.0 - edited[..., 24:40, 24:40]
    diff = (_run(edited, [family]) - _run(real_pairs, [family])).abs()
    outside = diff.clone()
    outside[..., 24:40, 24:40] = 0
    assert float(outside.max()) < 1e-6 and float(diff.max()) > 0.05


def test_thermal_keeps_the_structure_where_it_was(real_pairs):
    """Blur, halos and column noise leave each patch's structure in place: the output correlates with its own
    input far more than with another patch."""
    out = _run(real_pairs, ["thermal"]).flatten(1).numpy()
    inp = real_pairs.flatten(1).numpy()
    own = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(inp, out)])
    other = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(inp, np.roll(out, 1, axis=0))])
    assert own > 0.8 and own > other + 0.3


def test_family_names():
    assert parse_families("all") == FAMILIES
    assert parse_families("") == () and parse_families("none") == ()
    assert parse_families(" Curve, jpeg,curve ") == ("curve", "jpeg")
    with pytest.raises(InputError, match="unknown family bogus"):
        parse_families("curve,bogus")


def test_train_refuses_a_misspelt_family_before_loading_data(tmp_path, capsys):
    from rrl_edge.cli import main

    rc = main(["train", "--modality", "thermal,jpg", "--out-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown family jpg" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_resume_must_keep_the_modality_settings():
    from rrl_edge.training.trainer import TrainConfig, _check_resume_matches

    _check_resume_matches(TrainConfig(modality="curve,field"), {"modality": "curve,field", "modality_prob": 0.5})
    with pytest.raises(CheckpointError, match="--modality"):
        _check_resume_matches(TrainConfig(modality="curve"), {"modality": "", "modality_prob": 0.5})


def test_the_loader_applies_it_reproducibly(visnir_test):
    from rrl_edge.training.loader import PairLoader

    ps = visnir_test["field"]
    plain = PairLoader(ps.patches, ps.labels, 32, seed=3)
    varied = PairLoader(ps.patches, ps.labels, 32, seed=3, modality=ModalityConfig(("invert",), 1.0))
    a, b, c = (next(loader.iterate()) for loader in (plain, varied, varied))
    assert torch.allclose(b.vis, 1.0 - a.vis) and torch.allclose(b.other, 1.0 - a.other)
    assert torch.equal(b.vis, c.vis) and torch.equal(a.labels, b.labels)
