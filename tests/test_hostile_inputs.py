"""Hostile but realistic input to every command: each case runs the real CLI and must end with exit 2
(130 / 143 for Ctrl-C / SIGTERM), one line on stderr naming the file, no traceback, every input byte-identical
afterwards and no temporary file left behind.

The inputs are tiny files written here (a 64-pair patch file, a random width-0.25 checkpoint, a few ONNX
models built with onnx.helper or exported once per session), so the default run stays fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pytest

from rrl_edge.cli import main

ROOT = Path(__file__).resolve().parents[1]
N_PAIRS = 64


# ----------------------------------------------------------------------------------------------- fixtures


def _patch_file(folder: Path, name: str = "X", labels: Optional[np.ndarray] = None, n: int = N_PAIRS) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{name}.npy", rng.integers(0, 256, (n, 2, 64, 64), dtype=np.uint8))
    np.save(folder / f"{name}_labels.npy", np.tile([0, 1], n // 2).astype(np.uint8) if labels is None else labels)
    return folder / f"{name}.npy"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from rrl_edge.checkpoint import save_checkpoint
    from rrl_edge.models.rrlnet import build_rrlnet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "c.pt"
    save_checkpoint(path, build_rrlnet(0.25))
    return path


@pytest.fixture(scope="session")
def onnx_model(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random width-0.25 network exported once (no simplification: only the interface matters here)."""
    from rrl_edge.checkpoint import load_model
    from rrl_edge.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    export_onnx(load_model(checkpoint)[0], path)
    return path


def _toy_onnx(path: Path, shape: Sequence[object], elem: Optional[int] = None) -> Path:
    """A model with the right input names but the given input shape / element type: mean of both inputs."""
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if elem is None else elem
    inputs = [helper.make_tensor_value_info(n, elem, list(shape)) for n in ("vis", "other")]
    nodes = [helper.make_node("Add", ["vis", "other"], ["s"]),
             helper.make_node("ReduceMean", ["s"], ["score"], axes=[1, 2, 3], keepdims=0)]
    out = helper.make_tensor_value_info("score", elem, [shape[0]])
    model = helper.make_model(helper.make_graph(nodes, "toy", inputs, [out]),
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------------------------- the harness


def _hashes(folder: Path) -> Dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _temps(folder: Path) -> List[str]:
    return [p.name for p in folder.rglob(".*") if p.name.endswith(".tmp") or ".tmp-" in p.name
            or p.name.startswith(".export-")]


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture) -> tuple:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusing a flag
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, names: Sequence[str], want: int = 2) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == want, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], err


class Case:
    """One hostile input: ``setup(tmp, checkpoint, onnx)`` writes the inputs under tmp/in and returns the argv
    (outputs go where the case says); ``names`` must appear in the error line."""

    def __init__(self, id: str, setup: Callable[..., List[object]], names: Sequence[str], want: int = 2,
                 needs_onnx: bool = False) -> None:
        self.id, self.setup, self.names, self.want, self.needs_onnx = id, setup, names, want, needs_onnx


def _payload(checkpoint: Path, **changes: object) -> dict:
    import torch

    payload = torch.load(checkpoint, weights_only=True)
    payload.update(changes)
    return payload


def _bad_checkpoint(tmp: Path, checkpoint: Path, name: str, **changes: object) -> Path:
    import torch

    path = tmp / "in" / name
    torch.save(_payload(checkpoint, **changes), path)
    return path


def _int64_weights(tmp: Path, checkpoint: Path) -> Path:
    state = {k: (v * 1000).long() if v.is_floating_point() else v
             for k, v in _payload(checkpoint)["state_dict"].items()}
    return _bad_checkpoint(tmp, checkpoint, "int64.pt", state_dict=state)


def _run_state(tmp: Path, checkpoint: Path) -> Path:
    import torch

    payload = _payload(checkpoint, graph="train", optimizer={}, run_state={"step": "7", "epoch": 0})
    path = tmp / "in" / "badstate.pt"
    torch.save(payload, path)
    return path


class Hostile:
    """A pickle that would write a file when loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


def _hostile(tmp: Path) -> Path:
    import torch

    path = tmp / "in" / "evil.pt"
    torch.save({"format": "rrl-edge-checkpoint", "x": Hostile(str(tmp / "PWNED"))}, path)
    return path


def _huge_header(tmp: Path) -> Path:
    path = tmp / "in" / "huge.npy"
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (7000000000000000, 2, 64, 64), }"
    header = header + " " * (63 - (len(header) + 10) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 100)
    return path


def _float255(tmp: Path) -> Path:
    path = tmp / "in" / "f.npy"
    np.save(path, np.random.default_rng(0).uniform(0, 255, (8, 2, 64, 64)).astype(np.float32))
    return path


def _roadscene(tmp: Path, image: Callable[[Path], None]) -> Path:
    """A RoadScene-layout folder of 3 pairs whose images ``image`` writes."""
    root = tmp / "in" / "rs"
    for sub in ("visible", "infrared"):
        (root / sub).mkdir(parents=True)
        for i in range(3):
            image(root / sub / f"{i}.png")
    return root


def _png16(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 4000, (96, 96), dtype=np.uint16)).save(path)


def _png_large(path: Path) -> None:
    from PIL import Image

    if not hasattr(_png_large, "data"):
        buf = path.parent / "big.bin"
        Image.new("L", (8000, 7000)).save(buf, format="PNG")  # 56 MP of zeros: compresses to ~60 kB
        _png_large.data = buf.read_bytes()  # type: ignore[attr-defined]
        buf.unlink()
    path.write_bytes(_png_large.data)  # type: ignore[attr-defined]


def _loop_folder(tmp: Path) -> Path:
    root = tmp / "in" / "loops"
    (root / "country").mkdir(parents=True)
    for i in range(3):
        os.symlink("..", root / "country" / f"loop{i}")  # each one leads back up: an endless walk if followed
    return root


X = "X.npy"


def _x(tmp: Path) -> Path:
    return _patch_file(tmp / "in")


CASES = [
    # 1. outputs over inputs
    Case("run-out-over-patches", lambda t, c, o: ["run", "--engine", c, "--data", _x(t), "--out", t / "in" / X], [X]),
    Case("run-out-over-labels", lambda t, c, o: ["run", "--engine", c, "--data", _x(t), "--out",
                                                 t / "in" / "X_labels.npy"], ["X_labels.npy", "--out"]),
    Case("run-json-over-model", lambda t, c, o: ["run", "--engine", c, "--data", _x(t), "--json", c], ["c.pt", "--json"]),
    Case("run-json-over-onnx", lambda t, c, o: ["run", "--engine", o, "--data", _x(t), "--json", o], ["m.onnx"],
         needs_onnx=True),
    Case("eval-json-over-checkpoint", lambda t, c, o: ["eval", "--data", _x(t), "--checkpoint", c, "--json", c],
         ["c.pt"]),
    Case("eval-roc-over-patches", lambda t, c, o: ["eval", "--data", _x(t), "--checkpoint", c, "--roc", t / "in" / X],
         [X, "--roc"]),
    Case("parity-json-over-reference", lambda t, c, o: ["parity", "--reference", c, "--candidate", o, "--data", _x(t),
                                                        "--json", c], ["c.pt", "--json"], needs_onnx=True),
    Case("parity-plot-over-reference", lambda t, c, o: ["parity", "--reference", c, "--candidate", o, "--data", _x(t),
                                                        "--plot", c], ["c.pt", "--plot"], needs_onnx=True),
    Case("bench-json-over-model", lambda t, c, o: ["bench", o, "--json", o], ["m.onnx"], needs_onnx=True),
    Case("build-engine-over-onnx", lambda t, c, o: ["build", "--onnx", o, "--engine", o], ["m.onnx", "--engine"],
         needs_onnx=True),
    Case("export-into-data-folder", lambda t, c, o: ["export", "--checkpoint", c, "--eval-data", _x(t).parent,
                                                     "--out-dir", t / "in" / "deploy"], ["--out-dir", "in"]),
    Case("data-build-out-holds-data", lambda t, c, o: ["data", "build", "--data", _x(t).parent, "--out", t],
         ["--out", "would be replaced"]),
    Case("train-out-dir-holds-run", lambda t, c, o: ["train", "--data", _x(t), "--out-dir", _run_dir(t, c)],
         ["--out-dir", "not empty"]),
    Case("train-overwrite-own-init", lambda t, c, o: ["train", "--data", _x(t), "--out-dir", _run_dir(t, c),
                                                      "--overwrite", "--init-from", t / "in" / "run" / "best.pt"],
         ["best.pt", "--init-from"]),
    # 3. sizes
    Case("npy-header-claims-petabytes", lambda t, c, o: ["run", "--engine", c, "--data", _huge_header(t)],
         ["huge.npy", "header claims"]),
    Case("threads-100000", lambda t, c, o: ["run", "--engine", c, "--data", _x(t), "--threads", 100000],
         ["--threads", "at most"]),
    Case("bench-batch-million", lambda t, c, o: ["bench", c, "--batch", "1,1000000"], ["1000000", "at most"]),
    Case("model-info-width-100", lambda t, c, o: ["model-info", "--width", 100], ["--width", "at most"]),
    Case("checkpoint-width-1e4", lambda t, c, o: ["run", "--engine", _bad_checkpoint(
        t, c, "wide.pt", config={**_payload(c)["config"], "width": 1e4}), "--data", _x(t)], ["wide.pt", "width"]),
    Case("image-56-megapixels", lambda t, c, o: ["data", "build", "--data", _roadscene(t, _png_large), "--out",
                                                 t / "out" / "b", "--quiet"], ["0.png", "MP"]),
    Case("symlink-loops", lambda t, c, o: ["data", "build", "--data", _loop_folder(t), "--quiet"], ["country"]),
    # 4. silent wrong results
    Case("16-bit-images", lambda t, c, o: ["data", "build", "--data", _roadscene(t, _png16), "--out", t / "out" / "b",
                                           "--quiet"], ["0.png", "I;16"]),
    Case("float-patches-0-255", lambda t, c, o: ["run", "--engine", c, "--data", _float255(t)], ["f.npy", "0..1"]),
    Case("checkpoint-int64-weights", lambda t, c, o: ["run", "--engine", _int64_weights(t, c), "--data", _x(t)],
         ["int64.pt", "int64"]),
    Case("checkpoint-graph-banana", lambda t, c, o: ["eval", "--data", _x(t), "--checkpoint",
                                                     _bad_checkpoint(t, c, "banana.pt", graph="banana")],
         ["banana.pt", "graph"]),
    # 5. tracebacks
    Case("out-under-a-file", lambda t, c, o: ["run", "--engine", c, "--data", _x(t), "--out", t / "in" / X / "s.npy"],
         [X, "not a folder"]),
    Case("json-is-a-folder", lambda t, c, o: ["run", "--engine", c, "--data", _x(t), "--json", t / "in"],
         ["--json", "folder"]),
    Case("dangling-out-dir", lambda t, c, o: (os.symlink(t / "nowhere", t / "dangling") or
                                              ["export", "--checkpoint", c, "--out-dir", t / "dangling"]),
         ["dangling", "does not exist"]),
    Case("onnx-wrong-shape", lambda t, c, o: ["run", "--engine", _toy_onnx(t / "in" / "s.onnx", ["b", 1, 32, 32]),
                                              "--data", _x(t)], ["s.onnx", "shape"]),
    Case("onnx-wrong-dtype", lambda t, c, o: ["run", "--engine", _toy_onnx(t / "in" / "d.onnx", ["b", 1, 64, 64], 11),
                                              "--data", _x(t)], ["d.onnx", "double"]),
    Case("onnx-fixed-batch", lambda t, c, o: ["run", "--engine", _toy_onnx(t / "in" / "f.onnx", [4, 1, 64, 64]),
                                              "--data", _x(t)], ["f.onnx", "fixed batch"]),
    Case("parity-bad-candidate", lambda t, c, o: ["parity", "--reference", c, "--candidate",
                                                  _toy_onnx(t / "in" / "s.onnx", ["b", 1, 32, 32]), "--data", _x(t),
                                                  "--quiet"], ["s.onnx", "shape"]),
    Case("format-version-string", lambda t, c, o: ["run", "--engine", _bad_checkpoint(t, c, "v.pt", format_version="2"),
                                                   "--data", _x(t)], ["v.pt", "format_version"]),
    Case("state-dict-string", lambda t, c, o: ["run", "--engine", _bad_checkpoint(t, c, "s.pt", state_dict="weights"),
                                               "--data", _x(t)], ["s.pt", "state_dict"]),
    Case("bad-run-state", lambda t, c, o: ["train", "--data", _x(t), "--resume", _run_state(t, c), "--out-dir",
                                           t / "out" / "run"], ["badstate.pt", "run_state"]),
    Case("lr-1e30", lambda t, c, o: ["train", "--data", _x(t), "--lr", "1e30", "--out-dir", t / "out" / "r"],
         ["--lr", "at most"]),
    Case("single-class-training-file", lambda t, c, o: ["train", "--data", _patch_file(
        t / "in", "one", np.ones(N_PAIRS, np.uint8)), "--out-dir", t / "out" / "r"], ["one.npy", "labelled 1"]),
    # 6. misleading
    Case("hostile-pickle", lambda t, c, o: ["eval", "--data", _x(t), "--checkpoint", _hostile(t)],
         ["evil.pt", "refused without running"]),
    Case("fpr95-one-class-run", lambda t, c, o: ["run", "--engine", c, "--data", _patch_file(
        t / "in", "pos", np.ones(N_PAIRS, np.uint8))], ["pos.npy", "both"]),
    Case("fpr95-one-class-eval", lambda t, c, o: ["eval", "--checkpoint", c, "--data", _patch_file(
        t / "in", "neg", np.zeros(N_PAIRS, np.uint8))], ["neg.npy", "both"]),
]


# ---- the second pass: written without reading the cases above ----


def _fifo(tmp: Path, name: str = "pairs") -> Path:
    path = tmp / "in" / name
    os.mkfifo(path)
    return path


def _png_gray(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)).save(path)


def _nan_weights(tmp: Path, checkpoint: Path) -> Path:
    state = dict(_payload(checkpoint)["state_dict"])
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first].clone().fill_(float("nan"))
    return _bad_checkpoint(tmp, checkpoint, "nan.pt", state_dict=state)


def _complex_labels(tmp: Path) -> Path:
    path = _patch_file(tmp / "in", "Z")
    np.save(tmp / "in" / "Z_labels.npy", np.tile([0, 1], N_PAIRS // 2).astype(np.complex64))
    return path


def _huge_warp(tmp: Path) -> Path:
    """A VIS-NIR-layout folder of one pair whose ground-truth warp holds 1e300."""
    folder = tmp / "in" / "vn" / "field"
    folder.mkdir(parents=True)
    _png_gray(folder / "0001_rgb.jpg")
    _png_gray(folder / "0001_nir.jpg")
    np.save(folder / "0001_nir.npy", np.array([[1e300, 0, 0], [0, 1, 0]]))
    return folder.parent


def _dev_full() -> Path:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this machine (it stands for a full disk)")
    return Path("/dev/full")


def _cache_file(tmp: Path) -> Path:
    (tmp / "cache").write_text("not a folder")  # the harness points RRL_EDGE_CACHE here
    return _roadscene(tmp, _png_gray)


SECOND_PASS = [
    Case("fifo-as-run-data", lambda t, c, o: ["run", "--engine", c, "--data", _fifo(t)], ["pairs", "FIFO"]),
    Case("fifo-as-eval-data", lambda t, c, o: ["eval", "--checkpoint", c, "--data", _fifo(t)], ["pairs", "FIFO"]),
    Case("fifo-npy-as-data", lambda t, c, o: ["run", "--engine", c, "--data", _fifo(t, "p.npy")], ["p.npy", "FIFO"]),
    Case("cache-env-is-a-file", lambda t, c, o: ["eval", "--checkpoint", c, "--data", _cache_file(t), "--quiet"],
         ["RRL_EDGE_CACHE", "is a file"]),
    Case("init-from-nan-weights", lambda t, c, o: ["train", "--data", _x(t), "--init-from", _nan_weights(t, c),
                                                   "--out-dir", t / "out" / "r", "--quiet"], ["nan.pt", "non-finite"]),
    Case("complex-labels", lambda t, c, o: ["run", "--engine", c, "--data", _complex_labels(t)],
         ["Z.npy", "complex64"]),
    Case("register-eval-truth-1e300", lambda t, c, o: ["register-eval", "--engine", c, "--data", _huge_warp(t),
                                                       "--quiet", "--no-sift"], ["0001_nir.npy", "too large"]),
]
def _logit_onnx(tmp: Path) -> Path:
    """The rrl-edge interface, but the score is a logit (10 * mean(vis) - 5, in [-5, 5]): no sigmoid at the end."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, 64, 64]) for n in ("vis", "other")]
    consts = [helper.make_tensor("ten", TensorProto.FLOAT, [], [10.0]), helper.make_tensor("five", TensorProto.FLOAT,
                                                                                            [], [5.0])]
    nodes = [helper.make_node("ReduceMean", ["vis"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["m", "ten"], ["m10"]), helper.make_node("Sub", ["m10", "five"], ["score"])]
    graph = helper.make_graph(nodes, "logit", inputs, [helper.make_tensor_value_info("score", TensorProto.FLOAT,
                                                                                    ["batch"])], consts)
    path = tmp / "in" / "logit.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


SECOND_PASS += [
    Case("run-logit-model", lambda t, c, o: ["run", "--engine", _logit_onnx(t), "--data", _x(t), "--json",
                                             t / "out" / "r.json"], ["logit.onnx", "not match probabilities"]),
    Case("parity-logit-candidate", lambda t, c, o: ["parity", "--reference", c, "--candidate", _logit_onnx(t),
                                                    "--data", _x(t), "--quiet"], ["logit.onnx", "logit"]),
    Case("bench-iters-billion", lambda t, c, o: ["bench", c, "--iters", "1000000000"], ["--iters", "at most"]),
    Case("bench-warmup-billion", lambda t, c, o: ["bench", c, "--warmup", "1000000000"], ["--warmup", "at most"]),
    Case("device-check-budget-nan", lambda t, c, o: ["device-check", "--deploy", t / "in", "--budget", "nan"],
         ["--budget", "not a number"]),
    Case("device-check-budget-negative", lambda t, c, o: ["device-check", "--deploy", t / "in", "--budget", "-1"],
         ["--budget", "negative"]),
    Case("export-budget-inf", lambda t, c, o: ["export", "--checkpoint", c, "--budget", "inf", "--out-dir",
                                               t / "out" / "e"], ["--budget"]),
]
CASES += SECOND_PASS


def _run_dir(tmp: Path, checkpoint: Path) -> Path:
    """A finished run's folder (its best.pt is the checkpoint's bytes) under tmp/in."""
    run = tmp / "in" / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "best.pt").write_bytes(checkpoint.read_bytes())
    return run


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, checkpoint: Path, request: pytest.FixtureRequest,
                       capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRL_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    onnx_path = request.getfixturevalue("onnx_model") if case.needs_onnx else None
    (tmp_path / "in").mkdir()
    argv = case.setup(tmp_path, checkpoint, onnx_path)
    watched = [tmp_path / "in", checkpoint.parent] + ([onnx_path.parent] if onnx_path else [])
    before = {str(w): _hashes(w) for w in watched}
    started = time.monotonic()
    code, out, err = run_cli(argv, capsys)
    assert_refused(code, err, case.names, case.want)
    assert time.monotonic() - started < 30, "a refusal must not take long"
    for w in watched:
        assert _hashes(w) == before[str(w)], f"an input under {w} changed"
        assert not _temps(w), _temps(w)
    assert not (tmp_path / "PWNED").exists(), "the hostile pickle ran"
    assert "weights_only=False" not in err
    assert "pairs/s" not in out, "scored before refusing"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.pt")), "wrote a checkpoint"


# ------------------------------------------------------------------------------------- cases that need more


def test_second_train_on_a_locked_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """While one run holds --out-dir, another is refused naming the holder's pid; the lock goes with it."""
    from rrl_edge.paths import RunLock

    data = _patch_file(tmp_path / "in")
    with RunLock(tmp_path / "run") as lock:
        code, _, err = run_cli(["train", "--data", data, "--out-dir", tmp_path / "run"], capsys)
        assert_refused(code, err, ["run", f"pid {os.getpid()}"])
        assert lock.path.is_file()
    assert not lock.path.exists()
    assert not (tmp_path / "run").exists()


def test_cache_key_sees_an_edited_file(tmp_path: Path) -> None:
    """A warp matrix edited in place, same size: a new cache key (mtime), so the build is not reused."""
    from rrl_edge.data.build import dataset_key

    (tmp_path / "field").mkdir()
    warp = tmp_path / "field" / "0001_nir.npy"
    np.save(warp, np.eye(2, 3))
    key = dataset_key(tmp_path)
    np.save(warp, np.eye(2, 3) * 1.01)
    os.utime(warp, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert dataset_key(tmp_path) != key


def test_symlink_loop_walk_ends(tmp_path: Path) -> None:
    from rrl_edge.data.build import _listing

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "up")
    os.symlink(tmp_path, tmp_path / "a" / "root")
    started = time.monotonic()
    names = [name for name, _, _ in _listing(tmp_path)]
    assert time.monotonic() - started < 2
    assert names == ["a/b/f.jpg"]


def test_stale_temps_are_swept_by_the_next_write(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    """Temps of a killed writer (dead pid in the name, or old) go; a live process's stay."""
    out = tmp_path / "o"
    out.mkdir()
    dead = 2**22 + 12345  # above pid_max on this kernel's default: no such process
    leftovers = [out / f".s.npy.pid{dead}.abc.tmp", out / f".export-pid{dead}-xyz"]
    leftovers[1].mkdir()
    leftovers[0].write_bytes(b"half")
    old = out / ".s.npy.abc.tmp"
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    alive = out / ".s.npy.pid1.def.tmp"  # pid 1 is always alive: a writer at work
    alive.write_bytes(b"busy")
    code, _, err = run_cli(["run", "--engine", checkpoint, "--data", _patch_file(tmp_path / "in"), "--out",
                            out / "s.npy", "--quiet"], capsys)
    assert code == 0, err
    assert not leftovers[0].exists() and not old.exists()
    assert alive.exists()
    from rrl_edge.paths import sweep_stale

    assert leftovers[1] in sweep_stale(out, [".export-*"])


def test_missing_torch_names_the_extra(tmp_path: Path, checkpoint: Path) -> None:
    data = _patch_file(tmp_path / "in")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from rrl_edge.cli import main\n"
            f"sys.exit(main(['run', '--engine', {str(checkpoint)!r}, '--data', {str(data)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "c.pt" in proc.stderr and "pip install 'rrl-edge[train]'" in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_read_only_output_folder(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = run_cli(["run", "--engine", checkpoint, "--data", _patch_file(tmp_path / "in"),
                                "--out", ro / "s.npy"], capsys)
    finally:
        ro.chmod(0o755)
    assert_refused(code, err, ["ro", "cannot write"])


def test_oserror_mid_write_is_one_line(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills up while the scores are written: one line with the path, exit 2, no temp file."""
    import errno

    import rrl_edge.atomic as atomic

    real = atomic.atomic_write

    def full_disk(path, write):
        def failing(tmp):
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it: no file name
        return real(path, failing)

    monkeypatch.setattr(atomic, "atomic_write", full_disk)
    out = tmp_path / "o" / "s.npy"
    code, _, err = run_cli(["run", "--engine", checkpoint, "--data", _patch_file(tmp_path / "in"), "--out", out,
                            "--quiet"], capsys)
    assert_refused(code, err, ["the disk is full", "s.npy"])
    assert not out.exists() and not _temps(tmp_path / "o")


def _train_argv(tmp: Path) -> List[str]:
    data = _patch_file(tmp / "in", n=256)
    return [sys.executable, "-m", "rrl_edge.cli", "train", "--data", str(data), "--out-dir", str(tmp / "run"),
            "--batch", "8", "--max-steps", "100000", "--eval-every", "100000", "--threads", "1", "--quiet"]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_signals_end_in_one_line(tmp_path: Path, sig: int, code: int, word: str) -> None:
    """Ctrl-C or SIGTERM in the middle of training: one line, 130 / 143, the lock and temp files gone."""
    # a child inherits an ignored SIGINT (pytest started in the background by a shell without job control), and
    # Python then leaves it ignored: give the run the default disposition, as a terminal would
    proc = subprocess.Popen(_train_argv(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lock = tmp_path / ".run.lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)  # into the training loop (or the data loading before it)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    finally:  # a run that ignored the signal must not outlive the test (it would train on for 100,000 steps)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    assert "Traceback" not in err and word in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert not lock.exists()
    assert not _temps(tmp_path)


@pytest.mark.parametrize("sig, exc", [(signal.SIGTERM, "Terminated"), (signal.SIGINT, "KeyboardInterrupt")])
def test_a_stop_swallowed_by_a_finalizer_is_raised_again(sig: int, exc: str, capsys: pytest.CaptureFixture) -> None:
    """The handler's exception can land inside a finalizer (importlib's module-lock callback during a lazy import
    did, mid-training), where Python drops it: the run must still stop at its next step, without a traceback."""
    from rrl_edge import interrupts

    class StopsInFinalizer:
        def __del__(self) -> None:
            os.kill(os.getpid(), sig)
            for _ in range(1000):  # bytecodes for the handler to run between: it raises here, and is dropped
                pass

    with pytest.raises(KeyboardInterrupt) as raised:
        with interrupts.handled():
            StopsInFinalizer()  # freed at once: __del__ runs, its exception is swallowed
            survived = True  # without the remembered request, the run would go on from here
            interrupts.raise_if_requested()
    assert survived and type(raised.value).__name__ == exc
    assert "Exception ignored" not in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is not interrupts._handle  # handlers restored after the block
    interrupts.raise_if_requested()  # and nothing is left pending for the next command


# ---- outputs that must be written into, not replaced (the atomic writer every command uses) ----

def test_a_device_output_stays_a_device(tmp_path):
    """`--json /dev/null` as root (the normal case on a device): a rename would replace the device with a regular
    file. Checked on a private /dev/null made with mknod, so a regression cannot break the machine's."""
    from rrl_edge.atomic import write_json

    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root (where a rename over /dev/null could happen at all)")
    write_json({"a": 1}, null)
    assert stat.S_ISCHR(os.stat(null).st_mode) and null.read_bytes() == b""


def test_a_fifo_output_is_written_into(tmp_path):
    import threading

    from rrl_edge.atomic import write_json

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_json({"scores": [0.5]}, fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and json.loads(got[0]) == {"scores": [0.5]}


def test_a_link_output_keeps_its_link(tmp_path):
    from rrl_edge.atomic import write_json

    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json({"b": 2}, link)
    assert link.is_symlink() and json.loads(target.read_text()) == {"b": 2}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---- the second pass: cases that need a process, a mount or a real image ----


def _mount_small_disk(where: Path, size: str = "1m") -> None:
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("a small full disk is made with mount -t tmpfs, which needs root and CAP_SYS_ADMIN here")


def _fill(disk: Path) -> None:
    try:
        with open(disk / "filler", "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
    except OSError:
        pass


@pytest.fixture
def full_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    _mount_small_disk(disk)
    _fill(disk)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_is_named_as_the_disk(tmp_path: Path, checkpoint: Path, full_disk: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    """Scores to a full disk: the line names the disk and its free space, not the model or the data."""
    code, _, err = run_cli(["run", "--engine", checkpoint, "--data", _patch_file(tmp_path / "in"), "--json",
                            full_disk / "r.json", "--quiet"], capsys)
    assert_refused(code, err, ["r.json", "the disk is full", str(full_disk)])
    assert not (full_disk / "r.json").exists() and not _temps(full_disk)


def test_training_onto_a_full_disk_leaves_no_run_folder(tmp_path: Path, full_disk: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """The first checkpoint does not fit: one line naming the disk (not torch's "unexpected pos"), and the run
    folder the run made is gone again."""
    code, _, err = run_cli(["train", "--data", _patch_file(tmp_path / "in", n=256), "--out-dir", full_disk / "run",
                            "--batch", "8", "--max-steps", "2", "--eval-every", "1", "--threads", "1", "--quiet"],
                           capsys)
    assert_refused(code, err, [str(full_disk / "run"), "the disk is full"])  # the folder, its lock or best.pt
    assert "unexpected pos" not in err and not (full_disk / "run").exists()


def test_a_deleted_working_directory_is_one_line(tmp_path: Path, checkpoint: Path) -> None:
    """Run from a folder deleted under it: one line (torch's oneMKL died with a fatal error loading itself)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = (f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r})\n"
            "from rrl_edge.cli import main\n"
            f"sys.exit(main(['eval', '--checkpoint', {str(checkpoint)!r}, '--data', 'x.npy']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "working directory no longer exists" in proc.stderr, proc.stderr


def test_init_from_records_the_width_it_trains(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--init-from a width-0.5 checkpoint with --width 0.25: it trains at 0.5, says so, and records 0.5."""
    import torch

    from rrl_edge.checkpoint import save_checkpoint
    from rrl_edge.models.rrlnet import build_rrlnet

    torch.manual_seed(0)
    wide = tmp_path / "in" / "w050.pt"
    wide.parent.mkdir()
    save_checkpoint(wide, build_rrlnet(0.5))
    code, out, err = run_cli(["train", "--data", _patch_file(tmp_path / "in", n=128), "--init-from", wide,
                              "--width", "0.25", "--out-dir", tmp_path / "run", "--batch", "8", "--max-steps", "1",
                              "--eval-every", "1", "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert "width 0.5" in out + err
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["config"]["width"] == 0.5 and last["train_config"]["width"] == 0.5


def test_exif_orientation_is_applied_and_said(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A camera JPEG stored rotated with an EXIF orientation tag reads upright, as viewers and OpenCV show it."""
    from PIL import Image

    from rrl_edge.data.images import read_gray

    upright = np.zeros((60, 100), np.uint8)
    upright[10:20, 5:40] = 255  # a bar near the top left: any rotation or mirror moves it
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored.save(tmp_path / "cam.jpg", exif=exif, quality=100)
    Image.fromarray(upright).save(tmp_path / "plain.png")
    got = read_gray(tmp_path / "cam.jpg")
    assert got.shape == upright.shape
    assert np.abs(got.astype(int) - upright).mean() < 3
    assert "EXIF orientation 6" in capsys.readouterr().err
    read_gray(tmp_path / "plain.png")
    assert capsys.readouterr().err == ""


def test_shared_labels_name_is_said(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    """A patch file whose labels come from a folder-wide labels.npy: the output names the file it used."""
    path = _patch_file(tmp_path / "in", "pairs")
    (tmp_path / "in" / "pairs_labels.npy").rename(tmp_path / "in" / "labels.npy")
    code, _, err = run_cli(["run", "--engine", checkpoint, "--data", path, "--quiet"], capsys)
    assert code == 0, err
    assert "labels read from labels.npy" in err


def _endless_onnx(path: Path) -> Path:
    """A model with the rrl-edge interface whose Loop never ends (a stand-in for any very long ONNX Runtime call)."""
    import onnx
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["b"])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["b"])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1e-9])])
    nodes = [helper.make_node("ReduceMean", ["vis"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
             helper.make_node("Loop", ["", "cond", "m"], ["looped"], body=body),
             helper.make_node("Sigmoid", ["looped"], ["score"])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, 64, 64]) for n in ("vis", "other")]
    graph = helper.make_graph(nodes, "endless", inputs, [helper.make_tensor_value_info("score", TensorProto.FLOAT,
                                                                                       ["batch"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_sigterm_stops_a_long_onnxruntime_call(tmp_path: Path) -> None:
    """SIGTERM while ONNX Runtime runs a batch of a model that never ends: 143 and one line (it ran on for ever)."""
    model = _endless_onnx(tmp_path / "endless.onnx")
    data = _patch_file(tmp_path / "in", n=8)
    proc = subprocess.Popen([sys.executable, "-m", "rrl_edge.cli", "run", "--engine", str(model), "--data", str(data),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    time.sleep(6)  # imports, the model opened, the first batch under way
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    try:  # the model loops for ever: ending at all is the behaviour (the bound is generous for a loaded machine)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert [line for line in err.splitlines() if line.strip()] == [line for line in err.splitlines() if "terminated" in line]


def test_a_stopped_onnxruntime_call_ends_its_worker(tmp_path: Path) -> None:
    """The stop reaches ONNX Runtime itself: its terminate flag ends the endless run on the worker thread, which the
    command line's quick exit would otherwise hide (a library caller's process would keep a core busy for ever)."""
    import threading

    import onnxruntime as ort

    from rrl_edge import interrupts
    from rrl_edge.errors import Terminated
    from rrl_edge.runtime.onnxruntime_runner import run_interruptible

    session = ort.InferenceSession(str(_endless_onnx(tmp_path / "endless.onnx")), providers=["CPUExecutionProvider"])
    feeds = {name: np.zeros((1, 1, 64, 64), np.float32) for name in ("vis", "other")}
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    with pytest.raises(Terminated):
        with interrupts.handled():
            timer.start()
            run_interruptible(session, feeds)
    deadline = time.monotonic() + 60
    while any(t.name == "onnxruntime-run" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(t.name == "onnxruntime-run" for t in threading.enumerate()), "the ONNX Runtime run went on"


def test_onnxruntime_failures_print_no_log_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A model that fails inside ONNX Runtime: the one line only, none of its coloured log lines before it."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, 64, 64]) for n in ("vis", "other")]
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [7, -1])  # 7 rows: fails for any batch not 7
    nodes = [helper.make_node("Reshape", ["vis", "shape"], ["r"]),
             helper.make_node("ReduceMean", ["r"], ["score"], axes=[1], keepdims=0)]
    graph = helper.make_graph(nodes, "fails", inputs, [helper.make_tensor_value_info("score", TensorProto.FLOAT,
                                                                                    ["batch"])], [shape])
    path = tmp_path / "fails.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    proc = subprocess.run([sys.executable, "-m", "rrl_edge.cli", "run", "--engine", str(path), "--data",
                           str(_patch_file(tmp_path / "in", n=8)), "--quiet"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "\x1b[" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "fails.onnx" in proc.stderr


def test_registration_of_a_huge_image_is_scaled_back(tmp_path: Path) -> None:
    """Images beyond the working size are registered downscaled (memory and time stay bounded) and the affine
    comes back at full resolution: a known 40 x 24 px shift of a 3200-px-wide real image is found to 0.5 px."""
    import cv2

    from dataclasses import replace

    from rrl_edge.data.images import read_gray
    from rrl_edge.registration.pipeline import WORK_SIDE, RegisterConfig, register_images

    vis = read_gray(ROOT.parent / "shared" / "data" / "vis-nir" / "field" / "0001_rgb.jpg")
    big = cv2.resize(vis, (3200, round(3200 * vis.shape[0] / vis.shape[1])), interpolation=cv2.INTER_CUBIC)
    assert max(big.shape) > WORK_SIDE
    other = cv2.warpAffine(big, np.array([[1, 0, -40.0], [0, 1, -24.0]]), (big.shape[1], big.shape[0]))
    res = register_images(big, other, None, replace(RegisterConfig(), network=False))
    assert res.work_scale == pytest.approx(WORK_SIDE / 3200, rel=1e-3)
    assert np.abs(res.affine - np.array([[1, 0, -40.0], [0, 1, -24.0]])).max() < 0.5, res.affine


@pytest.mark.slow
def test_a_7000_pixel_pair_registers_in_under_2_gb(tmp_path: Path) -> None:
    """A 7000x7000 pair (under the 50 MP limit) peaked at 11.7 GB; registered at the working size it stays under
    the 2 GB the limits promise (the child's peak RSS, from the kernel)."""
    from PIL import Image

    vis = Image.open(ROOT.parent / "shared" / "data" / "vis-nir" / "field" / "0001_rgb.jpg").convert("L")
    nir = Image.open(ROOT.parent / "shared" / "data" / "vis-nir" / "field" / "0001_nir.jpg").convert("L")
    vis.resize((7000, 7000), Image.Resampling.BICUBIC).save(tmp_path / "v.png")
    nir.resize((7000, 7000), Image.Resampling.BICUBIC).save(tmp_path / "n.png")
    code = ("import resource, subprocess, sys\n"
            f"p = subprocess.run([sys.executable, '-m', 'rrl_edge.cli', 'register', 'v.png', 'n.png', '--json', "
            f"'r.json'], cwd={str(tmp_path)!r})\n"
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    rc, peak_kb = (int(v) for v in proc.stdout.split())
    assert rc in (0, 1), proc.stderr  # registered, or refused as a failure: either way bounded
    assert peak_kb < 2 * 1024 * 1024, f"peak {peak_kb / 1024:.0f} MB"


def test_a_device_that_refuses_writes_is_named(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    """`--json /dev/full`: the scores are computed (nothing can tell a device is full before writing to it), then
    one line names the device."""
    code, _, err = run_cli(["run", "--engine", checkpoint, "--data", _x(tmp_path), "--json", _dev_full(), "--quiet"],
                           capsys)
    assert_refused(code, err, ["/dev/full", "no space left"])


def test_an_export_killed_while_installing_is_incomplete_not_mixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installing over an older export: its report and reference go first and come back last, so an install cut
    short (SIGKILL between two renames) leaves a folder without them (refused as incomplete), never the new model
    beside the old report that vouches for other files."""
    from rrl_edge.contracts import FP32_ONNX, INT8_ONNX, REFERENCE, REPORT
    from rrl_edge.export import pipeline

    out, staging = tmp_path / "deploy", tmp_path / "deploy" / ".export-stage"
    staging.mkdir(parents=True)
    produced = [FP32_ONNX, INT8_ONNX, REFERENCE, REPORT]
    for name in produced:
        (out / name).write_text("old")
        (staging / name).write_text("new")
    moved: List[str] = []
    real = os.replace

    def cut_after_one(src, dst):
        if moved:
            raise KeyboardInterrupt("killed")  # stands for the SIGKILL: nothing after this point runs
        moved.append(Path(dst).name)
        real(src, dst)

    monkeypatch.setattr(pipeline.os, "replace", cut_after_one)
    with pytest.raises(KeyboardInterrupt):
        pipeline._install(staging, out, produced, "rrl.plan")
    assert moved and moved[0] not in (REFERENCE, REPORT)
    assert not (out / REPORT).exists() and not (out / REFERENCE).exists()
