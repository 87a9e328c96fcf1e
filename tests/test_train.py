"""Training on real country patches: loss goes down, files appear, resume is exact, DDP on 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rrl_edge.checkpoint import load_model, read_checkpoint
from rrl_edge.data.build import load_split
from rrl_edge.data.patchfile import PatchSet, save_patch_set
from rrl_edge.training.trainer import TrainConfig, train

TINY = dict(width=0.125, batch_size=16, schedule="constant", lr=1e-3, progress=False, threads=2)


def subset(ps: PatchSet, n: int, seed: int = 0) -> PatchSet:
    idx = np.sort(np.random.default_rng(seed).choice(len(ps), n, replace=False))
    return PatchSet(ps.name, ps.patches[idx], ps.labels[idx])


@pytest.fixture(scope="module")
def country(visnir_build):
    train_set = subset(load_split(visnir_build, "train")["country"], 1024)
    val_set = subset(load_split(visnir_build, "val")["country"], 256)
    return train_set, val_set


def test_training_lowers_the_loss_and_writes_its_files(tmp_path, country):
    state = train(TrainConfig(out_dir=str(tmp_path), max_steps=40, eval_every=20, **TINY), *country)
    assert state.step == 40 and len(state.history) == 2
    assert state.history[1]["train_loss"] < state.history[0]["train_loss"]
    for name in ("best.pt", "last.pt", "curve.json", "curve.png"):
        assert (tmp_path / name).is_file(), name
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert curve["best_val_fpr95"] == min(h["val_fpr95"] for h in curve["history"])
    net, meta = load_model(tmp_path / "best.pt")
    assert meta["graph"] == "deploy" and meta["val_fpr95"] == curve["best_val_fpr95"]
    assert meta["train_pairs"] == 1024


def test_equal_validation_fpr95s_are_told_apart_by_the_log_loss(tmp_path, country):
    """A few validation pairs of a new camera read FPR95 0.00 at every step; best.pt is then the step with the
    lowest validation log loss, not the first (the least trained). The shipped model on 64 country pairs it
    separates perfectly, fine-tuned a few steps: every FPR95 ties, the log losses differ."""
    from rrl_edge.checkpoint import shipped_checkpoint

    val = subset(country[1], 64, seed=1)
    cfg = dict(TINY, width=0.25, lr=1e-4)
    state = train(TrainConfig(out_dir=str(tmp_path), max_steps=8, eval_every=2, init_from=str(shipped_checkpoint()),
                              **cfg), country[0], val)
    fpr95s = [h["val_fpr95"] for h in state.history]
    losses = [h["val_log_loss"] for h in state.history]
    assert fpr95s == [0.0] * 4 and len(set(losses)) == 4
    _, meta = load_model(tmp_path / "best.pt")
    assert meta["step"] == state.history[int(np.argmin(losses))]["step"]
    assert meta["val_log_loss"] == min(losses) == state.best_val_log_loss


def test_resume_continues_exactly(tmp_path, country):
    straight = train(TrainConfig(out_dir=str(tmp_path / "a"), max_steps=6, eval_every=3, **TINY), *country)
    train(TrainConfig(out_dir=str(tmp_path / "b"), max_steps=3, eval_every=3, **TINY), *country)
    resumed = train(TrainConfig(out_dir=str(tmp_path / "b"), max_steps=6, eval_every=3,
                                resume=str(tmp_path / "b" / "last.pt"), **TINY), *country)
    assert resumed.step == straight.step == 6
    a = read_checkpoint(tmp_path / "a" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_resume_refuses_a_deployed_checkpoint(tmp_path, country):
    from rrl_edge.errors import CheckpointError

    train(TrainConfig(out_dir=str(tmp_path), max_steps=2, eval_every=2, **TINY), *country)
    with pytest.raises(CheckpointError, match="best.pt is not a training checkpoint"):
        train(TrainConfig(out_dir=str(tmp_path), max_steps=4, resume=str(tmp_path / "best.pt"), **TINY), *country)


def test_resume_refuses_options_that_change_the_run(tmp_path, country):
    """A resumed mining run without --hard-negatives would silently train another loss: it is refused instead."""
    from rrl_edge.errors import CheckpointError

    train(TrainConfig(out_dir=str(tmp_path), max_steps=2, eval_every=2, hard_negatives=0.5, **TINY), *country)
    last = str(tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="hard negatives 0.5, not 1.0; pass the same --hard-negatives"):
        train(TrainConfig(out_dir=str(tmp_path), max_steps=4, resume=last, **TINY), *country)
    state = train(TrainConfig(out_dir=str(tmp_path), max_steps=4, resume=last, hard_negatives=0.5, **TINY), *country)
    assert state.step == 4


def test_order_seed_changes_the_batches_and_a_resume_must_keep_it(tmp_path, country):
    """--order-seed: a run from the same cut sees other batches (the default replays --seed's order); resuming it
    without the same --order-seed is refused like the other options that change the run."""
    from rrl_edge.errors import CheckpointError

    def weights(name: str, **kw) -> dict:
        train(TrainConfig(out_dir=str(tmp_path / name), max_steps=2, eval_every=2, **TINY, **kw), *country)
        return read_checkpoint(tmp_path / name / "last.pt")["state_dict"]

    default, same, other = weights("default"), weights("same", order_seed=0), weights("other", order_seed=1)
    key = next(k for k in default if k.endswith("weight"))
    torch.testing.assert_close(default[key], same[key], rtol=0, atol=0)
    assert not torch.equal(default[key], other[key])
    with pytest.raises(CheckpointError, match="order seed 1, not None; pass the same --order-seed"):
        train(TrainConfig(out_dir=str(tmp_path / "other"), max_steps=4, resume=str(tmp_path / "other" / "last.pt"),
                          **TINY), *country)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path, country):
    train_set, val_set = country
    save_patch_set(train_set, tmp_path / "train_patches.npy", tmp_path / "train_labels.npy")
    save_patch_set(val_set, tmp_path / "val_patches.npy", tmp_path / "val_labels.npy")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "rrl_edge.cli", "train", "--data", str(tmp_path / "train_patches.npy"),
           "--val-data", str(tmp_path / "val_patches.npy"), "--out-dir", str(tmp_path / "run"),
           "--width", "0.125", "--batch", "16", "--max-steps", "4", "--eval-every", "2", "--threads", "1", "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    curve = json.loads((tmp_path / "run" / "curve.json").read_text())
    last = curve["history"][-1]
    assert last["step"] == 4
    assert last["pairs_seen"] == 4 * 16 * 2  # two processes, each its own shard of every step


@pytest.mark.slow  # 15-40 s on 2 cores; .ci/run runs it
def test_a_joint_run_is_chosen_on_the_mean_of_each_sources_fpr95(tmp_path, country, data_root):
    """Two validation sets (VIS-NIR country and RoadScene): each is scored on its own and the run keeps the mean,
    so the larger set cannot decide alone which checkpoint is best."""
    from rrl_edge.data.build import PatchConfig, ensure_dataset
    from rrl_edge.metrics import fpr95
    from rrl_edge.runtime.registry import score_with

    roadscene_val = subset(load_split(ensure_dataset(data_root / "roadscene", PatchConfig(), progress=False),
                                      "val")["roadscene"], 256)
    train_set, visnir_val = country
    vals = {"vis-nir": visnir_val, "roadscene": roadscene_val}
    state = train(TrainConfig(out_dir=str(tmp_path), max_steps=4, eval_every=4, **TINY), train_set, vals)
    from rrl_edge.fpr95_table import FPR95Table

    entry = state.history[-1]
    table = FPR95Table.from_json(entry["val_fpr95_table"])  # each source's FPR95 and pairs, and their mean
    by_source = table.fpr95_by_category()
    assert list(by_source) == ["vis-nir", "roadscene"] and table["roadscene"].pairs == 256
    assert entry["val_fpr95"] == table.to_json()["mean_fpr95"]
    assert entry["val_fpr95"] == pytest.approx(np.mean(list(by_source.values())), abs=1e-3)
    net, meta = load_model(tmp_path / "best.pt")  # the saved network gives the recorded numbers
    assert meta["val_fpr95_table"] == entry["val_fpr95_table"]
    for name, ps in vals.items():
        assert fpr95(ps.labels, score_with(net, ps.patches)) == pytest.approx(by_source[name], abs=1e-3)


def test_hard_negative_mining_keeps_every_positive_and_the_most_confused_negatives(country):
    from rrl_edge.checkpoint import shipped_for_layout
    from rrl_edge.contracts import to_unit_float
    from rrl_edge.models.rrlnet import TrainOutputs
    from rrl_edge.training.trainer import hard_negative_weights, mlpp_loss

    pairs = subset(country[0], 128, seed=3)
    x = torch.from_numpy(to_unit_float(pairs.patches))
    vis, other = x[:, :1].contiguous(), x[:, 1:].contiguous()
    labels = torch.from_numpy(pairs.labels.astype(np.float32)).unsqueeze(1)
    net, _ = load_model(shipped_for_layout("vis-nir"))
    with torch.no_grad():
        logit = net.logit(vis, other)
    assert hard_negative_weights(logit, labels, 1.0) is None
    w = hard_negative_weights(logit, labels, 0.25).view(-1)
    neg = labels.view(-1) < 0.5
    assert torch.all(w[~neg] == 1)
    assert int(w[neg].sum()) == int(np.ceil(0.25 * int(neg.sum())))
    kept, dropped = logit.view(-1)[neg & (w > 0)], logit.view(-1)[neg & (w == 0)]
    assert kept.min() >= dropped.max()  # the negatives the network confuses most are the ones it learns from
    # The mined loss is the BCE over positives and kept negatives only; keeping all is the plain mean.
    out = TrainOutputs(main=logit)
    _, all_main = mlpp_loss(out, vis, other, labels, 1.0)
    torch.testing.assert_close(all_main, torch.nn.functional.binary_cross_entropy_with_logits(logit, labels))
    _, mined = mlpp_loss(out, vis, other, labels, 0.25)
    sel = w > 0
    torch.testing.assert_close(mined, torch.nn.functional.binary_cross_entropy_with_logits(logit[sel], labels[sel]))
    assert mined > all_main  # easy negatives dropped: the average is over harder pairs


@pytest.mark.slow  # 15-40 s on 2 cores; .ci/run runs it
def test_training_with_hard_negatives_lowers_the_loss(tmp_path, country):
    state = train(TrainConfig(out_dir=str(tmp_path), max_steps=40, eval_every=20, hard_negatives=0.5, **TINY), *country)
    assert state.history[1]["train_loss"] < state.history[0]["train_loss"]
    assert read_checkpoint(tmp_path / "last.pt")["train_config"]["hard_negatives"] == 0.5
