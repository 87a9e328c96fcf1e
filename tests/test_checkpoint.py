"""Checkpoints: round trip, shipped model, and clear errors for missing, corrupt or foreign files."""

import os

import pytest
import torch

from rrl_edge.checkpoint import load_model, load_train_model, save_checkpoint, shipped_checkpoint
from rrl_edge.errors import CheckpointError
from rrl_edge.models.rrlnet import RRLNet, build_rrlnet, build_rrlnet_train


def test_round_trip_keeps_scores(tmp_path):
    torch.manual_seed(0)
    net = build_rrlnet(0.25).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, net, val_fpr95=1.5)
    loaded, meta = load_model(path)
    x, y = torch.rand(3, 1, 64, 64), torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x, y), net(x, y))
    assert meta["val_fpr95"] == 1.5 and meta["config"]["width"] == 0.25


def test_training_checkpoint_gives_deployed_network_and_warm_start(tmp_path):
    train = build_rrlnet_train(0.25)
    save_checkpoint(tmp_path / "t.pt", train)
    net, meta = load_model(tmp_path / "t.pt")
    assert isinstance(net, RRLNet) and meta["graph"] == "train"
    save_checkpoint(tmp_path / "d.pt", net)
    warm, _ = load_train_model(tmp_path / "d.pt")
    for k, v in net.state_dict().items():
        assert torch.equal(warm.net.state_dict()[k], v)


def test_shipped_model_loads():
    net, meta = load_model(None)
    assert meta["path"] == str(shipped_checkpoint()) == str(shipped_checkpoint("joint"))  # eval's, export's default
    assert os.path.getsize(meta["path"]) <= 20 * 1024 * 1024
    assert "val_fpr95" in meta


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt does not exist"):
        load_model(tmp_path / "nope.pt")


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "corrupt.pt"
    save_checkpoint(path, build_rrlnet(0.25))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated in transfer
    with pytest.raises(CheckpointError, match="corrupt.pt is corrupt"):
        load_model(path)
    path.write_bytes(b"\x00not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt.pt is corrupt"):
        load_model(path)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="resnet.pt is not an rrl-edge checkpoint"):
        load_model(path)


class _RunsCodeWhenUnpickled:
    """A pickle that creates a file when loaded: what a hostile 'checkpoint' from the internet can do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_foreign_pickle_is_refused_before_its_code_runs(tmp_path):
    path = tmp_path / "hostile.pt"
    marker = tmp_path / "pwned"
    torch.save({"format": "rrl-edge-checkpoint", "payload": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="hostile.pt holds Python objects besides tensors"):
        load_model(path)
    assert not marker.exists()


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = tmp_path / "mixed.pt"
    save_checkpoint(path, build_rrlnet(0.25))
    payload = torch.load(path, weights_only=False)
    payload["config"]["width"] = 0.5
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="mixed.pt does not fit its own config"):
        load_model(path)


def test_failed_save_leaves_nothing(tmp_path):
    net = build_rrlnet(0.25)
    with pytest.raises(Exception):
        save_checkpoint(tmp_path / "x.pt", net, unpicklable=lambda: None)
    assert list(tmp_path.iterdir()) == []


def _average(*args):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "average_checkpoints.py"
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_average_checkpoints_is_the_weighted_mean_and_refuses_bad_input(tmp_path):
    """scripts/average_checkpoints.py (the model soup behind the shipped width-0.5 model): the weighted mean of two
    shipped models of one width, tensor by tensor; weights 1,0 give the first model's scores exactly; another
    architecture, a weight count that does not match, or an output that is an input get one line and exit 2, and
    nothing is written."""
    a, b = shipped_checkpoint("vis-nir"), shipped_checkpoint("roadscene")
    out = tmp_path / "soup.pt"
    r = _average(a, b, "--out", out, "--weights", "3,1")
    assert r.returncode == 0, r.stderr
    soup, ma, mb = (load_model(p)[0].state_dict() for p in (out, a, b))
    for k, v in soup.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * ma[k] + 0.25 * mb[k], rtol=1e-5, atol=1e-6)
    first = tmp_path / "first.pt"
    assert _average(a, b, "--out", first, "--weights", "1,0").returncode == 0
    x, y = torch.rand(4, 1, 64, 64), torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_model(first)[0].eval()(x, y), load_model(a)[0].eval()(x, y))
    for args, words in (((a, shipped_checkpoint("joint-w050")), "another architecture"),
                        ((a, b, "--weights", "1"), "one non-negative weight per checkpoint")):
        bad = tmp_path / "bad.pt"
        r = _average(*args, "--out", bad)
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not bad.exists()
    r = _average(a, out, "--out", out)
    assert r.returncode == 2 and "would overwrite an input" in r.stderr
