"""The network's structure: sizes from the paper, MGLA gates, pruning that keeps the score exactly."""

import json
import subprocess
import sys

import pytest
import torch

from rrl_edge.models.complexity import count_macs, count_params, model_info
from rrl_edge.models.rrlnet import MGLA, RRLNet, RRLNetConfig, RRLNetTrain, build_rrlnet, build_rrlnet_train, eca_kernel_size


def test_full_width_matches_the_keras_graph():
    # A transcription of the authors' Keras graph counts 9,394,105 trainable parameters, ~1.2 GFLOPs.
    net = build_rrlnet(1.0)
    assert count_params(net) == 9_394_105
    gflops = 2 * count_macs(net) / 1e9
    assert 1.1 < gflops < 1.35
    fil = count_params(net.fil)
    assert fil > 0.8 * count_params(net)  # FIL's stage convolutions are most of the network


@pytest.mark.parametrize("n,k", [(4, 1), (8, 3), (16, 3), (32, 3), (64, 3), (128, 5), (256, 5)])
def test_gate_kernel_sizes(n, k):
    assert eca_kernel_size(n) == k


def test_mgla_multiplies_by_three_gates_in_unit_range():
    torch.manual_seed(0)
    mgla = MGLA(16, 8, 8)
    x = torch.rand(2, 16, 8, 8) + 0.1
    gates = mgla.gate_c(x) * mgla.gate_h(x) * mgla.gate_w(x)
    assert mgla.gate_c(x).shape == (2, 16, 1, 1)
    assert mgla.gate_h(x).shape == (2, 1, 8, 1)
    assert mgla.gate_w(x).shape == (2, 1, 1, 8)
    assert torch.allclose(mgla(x), x * gates)
    assert (gates > 0).all() and (gates < 1).all()  # no residual: every value is attenuated


def test_channel_gate_pools_with_softmax_over_positions():
    mgla = MGLA(4, 4, 4)
    x = torch.rand(1, 4, 4, 4)
    weights = torch.softmax(x.mean(dim=1).reshape(1, -1), dim=-1)  # (1, 16)
    pooled = (x.reshape(1, 4, 16) * weights[:, None, :]).sum(-1)  # (1, 4)
    expected = torch.sigmoid(mgla.gate_c.conv(pooled[:, None, :])).reshape(1, 4, 1, 1)
    assert torch.allclose(mgla.gate_c(x), expected, atol=1e-6)


def test_encoders_do_not_share_weights():
    net = build_rrlnet(0.25)
    assert net.alfe_vis.convs[0][0].weight.data_ptr() != net.alfe_other.convs[0][0].weight.data_ptr()


def test_pruned_graph_gives_exactly_the_training_graphs_main_score():
    torch.manual_seed(1)
    train = build_rrlnet_train(0.25)
    # Give BatchNorm non-trivial statistics, then compare in eval mode.
    train.train()
    with torch.no_grad():
        for _ in range(3):
            train(torch.rand(8, 1, 64, 64), torch.rand(8, 1, 64, 64))
    train.eval()
    vis, other = torch.rand(5, 1, 64, 64), torch.rand(5, 1, 64, 64)
    with torch.no_grad():
        main = torch.sigmoid(train(vis, other).main)
        pruned = train.prune()
        assert isinstance(pruned, RRLNet)
        assert count_params(pruned) < count_params(train)
        # A fresh deployed network loaded from the pruned weights must agree bit for bit.
        fresh = RRLNet(train.cfg).eval()
        fresh.load_state_dict(pruned.state_dict())
        assert torch.equal(fresh(vis, other), main)


def test_training_graph_outputs():
    out = build_rrlnet_train(0.25)(torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64))
    assert out.main.shape == (2, 1)
    assert sorted(out.aux_logits) == ["m3", "m4", "m5", "s3", "s4"]
    assert out.recon_vis.shape == (2, 1, 64, 64) and out.recon_other.shape == (2, 1, 64, 64)
    assert 0 <= out.recon_vis.min() and out.recon_vis.max() <= 1


def test_config_round_trip():
    cfg = RRLNetConfig(width=0.5)
    assert RRLNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        RRLNetConfig.from_dict({"width": 1.0, "bogus": 3})


def test_model_info_cli_prints_json():
    out = subprocess.run([sys.executable, "-m", "rrl_edge.cli", "model-info", "--width", "1.0", "--json"],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["deploy_params"] == 9_394_105
    assert info["train_params"] > info["deploy_params"]
    assert info == model_info(1.0)
