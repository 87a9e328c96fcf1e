"""PyTorch on CUDA as a runner option (`rrl-edge run --backend torch --device cuda`), for desktop GPUs without
TensorRT. Here (a CPU build of torch) it must refuse in one line; where CUDA exists it must score like the CPU."""

import numpy as np
import pytest

from rrl_edge.errors import InputError
from rrl_edge.runtime.registry import make_runner, runner_options

pytest_plugins = ("export_fixtures",)


def _cuda():
    import torch

    return torch.cuda.is_available()


def test_device_option_reaches_the_torch_runner(trained_checkpoint):
    assert runner_options(trained_checkpoint, "auto", device="cuda", threads=None) == {"device": "cuda"}
    assert make_runner(trained_checkpoint, device="cuda:1").device == "cuda:1"
    with pytest.raises(InputError, match="PyTorch runs on cpu, cuda or cuda:N"):
        make_runner(trained_checkpoint, device="tpu")


def test_cuda_without_cuda_is_one_line_and_exit_2(trained_checkpoint, proof_pairs, tmp_path, capsys):
    if _cuda():
        pytest.skip("CUDA is available here: test_cuda_scores_match_the_cpu covers it")
    from rrl_edge.cli import main

    np.save(tmp_path / "pairs.npy", proof_pairs[:8])
    rc = main(["run", "--engine", str(trained_checkpoint), "--backend", "torch", "--device", "cuda", "--data",
               str(tmp_path / "pairs.npy"), "--quiet", "--out", str(tmp_path / "s.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "--device cuda: this PyTorch" in err and "has no CUDA" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "s.npy").exists()


@pytest.mark.gpu
def test_cuda_scores_match_the_cpu(trained_checkpoint, proof_pairs):
    if not _cuda():
        pytest.skip("no CUDA in this PyTorch (a CPU build, or no GPU)")
    from rrl_edge.runtime.runner import score_pairs

    with make_runner(trained_checkpoint, device="cuda") as gpu, make_runner(trained_checkpoint) as cpu:
        assert np.max(np.abs(score_pairs(gpu, proof_pairs) - score_pairs(cpu, proof_pairs))) <= 1e-4
