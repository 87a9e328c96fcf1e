"""Quantization-aware fine-tuning: the simulation is the Q/DQ model, the fine-tune writes a checkpoint that
exports, and a Q/DQ model of another network is refused before anything trains."""

from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

from rrl_edge.cli import main
from rrl_edge.data.patchfile import PatchSet
from rrl_edge.errors import ExportError

pytest_plugins = ("export_fixtures",)


def test_the_simulation_scores_like_the_qdq_model(default_onnx: Path, visnir_test: Dict[str, PatchSet]):
    """On real test pairs the fake-quantized PyTorch model follows ONNX Runtime's INT8 model far more closely
    than either follows the float model; detaching gives the float model back bit for bit."""
    from rrl_edge.checkpoint import load_model, shipped_checkpoint
    from rrl_edge.runtime.onnxruntime_runner import cpu_session
    from rrl_edge.runtime.registry import score_with
    from rrl_edge.training.qat import attach, detach, quantized_inputs

    pairs = np.concatenate([visnir_test[c].patches[:300] for c in ("field", "water", "urban")])
    convs = quantized_inputs(default_onnx / "rrl.int8.onnx")
    assert len(convs) == 16 and all(q.input_scale > 0 and q.out_channels > 0 for q in convs.values())
    model, _ = load_model(shipped_checkpoint())
    fp32 = score_with(model, pairs, 256)
    int8 = score_with(cpu_session(default_onnx / "rrl.int8.onnx"), pairs, 256)
    handles = attach(model, convs)
    simulated = score_with(model, pairs, 256)
    detach(model, handles)
    np.testing.assert_array_equal(score_with(model, pairs, 256), fp32)
    from rrl_edge.runtime.fidelity import logit_rms

    assert logit_rms(int8, simulated) < 0.3 * logit_rms(fp32, int8), (logit_rms(int8, simulated), logit_rms(fp32, int8))


def test_a_qdq_model_of_another_network_is_refused(default_onnx: Path):
    from rrl_edge.checkpoint import load_model, shipped_checkpoint
    from rrl_edge.training.qat import attach, quantized_inputs

    wider, _ = load_model(shipped_checkpoint("joint-w050"))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(ExportError, match="was rrl.int8.onnx exported from it"):
        attach(wider, quantized_inputs(default_onnx / "rrl.int8.onnx"))
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())  # untouched
    with pytest.raises(ExportError, match="no quantized convolution"):
        quantized_inputs(default_onnx / "rrl.onnx")


def test_qat_command_writes_a_checkpoint_that_scores_like_its_parent(default_onnx, data_root, visnir_test, tmp_path,
                                                                     capsys):
    from rrl_edge.checkpoint import load_model, read_checkpoint, shipped_checkpoint
    from rrl_edge.runtime.registry import score_with

    out = tmp_path / "qat.pt"
    rc = main(["qat", "--checkpoint", str(shipped_checkpoint()), "--int8", str(default_onnx / "rrl.int8.onnx"),
               "--data", str(data_root / "vis-nir"), "--out", str(out), "--steps", "3", "--batch", "16",
               "--quiet"])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    assert "16 INT8 convolutions simulated" in stdout and f"wrote {out}" in stdout
    payload = read_checkpoint(out)
    assert payload["qat"]["steps"] == 3 and len(payload["qat"]["quantized_convs"]) == 16
    assert payload["parent"] == str(shipped_checkpoint())
    tuned, _ = load_model(out)
    parent, _ = load_model(shipped_checkpoint())
    assert not any(k.endswith("original") for k in tuned.state_dict())  # plain float weights, no parametrization
    pairs = visnir_test["indoor"].patches[:256]
    diff = np.abs(score_with(tuned, pairs, 256) - score_with(parent, pairs, 256))
    assert 0 < diff.max() < 0.2  # three small steps: changed, not wrecked
    # bad input: a file that is not a Q/DQ model is one line, exit 2, and no checkpoint
    rc = main(["qat", "--checkpoint", str(shipped_checkpoint()), "--int8", str(default_onnx / "rrl.onnx"),
               "--data", str(data_root / "vis-nir"), "--out", str(tmp_path / "no.pt"), "--steps", "1", "--quiet"])
    assert rc == 2 and "no quantized convolution" in capsys.readouterr().err and not (tmp_path / "no.pt").exists()
