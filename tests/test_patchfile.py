"""The published patch-file format: loading, validation, label-file discovery, atomic saving."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rrl_edge.data import patchfile
from rrl_edge.data.patchfile import PatchSet, load_patch_file, save_patch_set, validate_patches
from rrl_edge.errors import DataError


def _arrays(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 2, 64, 64), dtype=np.uint8)
    y = np.tile(np.array([1, 0], np.uint8), n // 2)
    return x, y


def test_roundtrip(tmp_path: Path) -> None:
    x, y = _arrays()
    save_patch_set(PatchSet("field", x, y), tmp_path / "p.npy", tmp_path / "l.npy")
    ps = load_patch_file(tmp_path / "p.npy", tmp_path / "l.npy", name="field")
    assert ps.name == "field" and len(ps) == 6
    assert ps.patches.dtype == np.uint8 and ps.labels.dtype == np.uint8
    np.testing.assert_array_equal(ps.patches, x)
    np.testing.assert_array_equal(ps.labels, y)
    mm = load_patch_file(tmp_path / "p.npy", tmp_path / "l.npy", mmap=True)
    assert isinstance(mm.patches, np.memmap)
    np.testing.assert_array_equal(mm.patches[3], x[3])


@pytest.mark.parametrize(
    "patch_name,label_name",
    [
        ("test_field_patches.npy", "test_field_labels.npy"),
        ("field.npy", "field_labels.npy"),
        ("X_test.npy", "y_test.npy"),
        ("x.npy", "y.npy"),
        ("data.npy", "labels.npy"),
    ],
)
def test_label_path_discovery(tmp_path: Path, patch_name: str, label_name: str) -> None:
    x, y = _arrays()
    np.save(tmp_path / patch_name, x)
    np.save(tmp_path / label_name, y.astype(np.int64))  # published label files are often int64
    ps = load_patch_file(tmp_path / patch_name)
    assert ps.name == Path(patch_name).stem
    assert ps.labels.dtype == np.uint8
    np.testing.assert_array_equal(ps.labels, y)


def test_labels_n_by_1_accepted(tmp_path: Path) -> None:
    x, y = _arrays()
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", y[:, None].astype(np.float32))
    assert len(load_patch_file(tmp_path / "a.npy", tmp_path / "b.npy")) == 6


def test_missing_labels_names_file(tmp_path: Path) -> None:
    x, _ = _arrays()
    np.save(tmp_path / "lonely_patches.npy", x)
    with pytest.raises(DataError, match="lonely_patches.npy.*no labels file"):
        load_patch_file(tmp_path / "lonely_patches.npy")


def test_missing_patch_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere.npy"):
        load_patch_file(tmp_path / "nothere.npy", tmp_path / "l.npy")


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda x, y: (x[:, :1], y), "shape"),
        (lambda x, y: (x[:, :, :32, :32], y), "shape"),
        (lambda x, y: (x.astype(np.float32), y), "dtype float32"),
        (lambda x, y: (x, np.where(y == 1, 2, 0)), "must be 0 or 1"),
        (lambda x, y: (x, np.full(y.shape, np.nan)), "must be 0 or 1"),
        (lambda x, y: (x, y[:-1]), "6 patch pairs but 5 labels"),
        (lambda x, y: (x[:0], y[:0]), "N == 0"),
        (lambda x, y: (x, y.reshape(3, 2)), "labels have shape"),
    ],
)
def test_bad_contents_name_source(tmp_path: Path, mutate, message: str) -> None:
    x, y = mutate(*_arrays())
    with pytest.raises(DataError, match=message) as ei:
        validate_patches(x, y, "src.npy")
    assert "src.npy" in str(ei.value)
    np.save(tmp_path / "bad_patches.npy", x)
    np.save(tmp_path / "bad_labels.npy", y)
    if message != "labels have shape":  # (N,1)-style squeeze does not apply to (3, 2)
        with pytest.raises(DataError, match="bad_patches.npy"):
            load_patch_file(tmp_path / "bad_patches.npy")


def test_non_npy_bytes(tmp_path: Path) -> None:
    _, y = _arrays()
    (tmp_path / "junk_patches.npy").write_bytes(b"\xff\xd8 this is a jpeg, not an array" * 10)
    np.save(tmp_path / "junk_labels.npy", y)
    with pytest.raises(DataError, match="junk_patches.npy.*not a readable .npy"):
        load_patch_file(tmp_path / "junk_patches.npy")
    x, _ = _arrays()
    np.save(tmp_path / "ok_patches.npy", x)
    (tmp_path / "ok_labels.npy").write_bytes(np.lib.format.MAGIC_PREFIX + b"\x01\x00garbage")
    with pytest.raises(DataError, match="ok_labels.npy"):
        load_patch_file(tmp_path / "ok_patches.npy")


def test_npz_rejected(tmp_path: Path) -> None:
    x, y = _arrays()
    np.savez(tmp_path / "z.npz", x=x)
    np.save(tmp_path / "z_labels.npy", y)
    with pytest.raises(DataError, match="z.npz.*npz"):
        load_patch_file(tmp_path / "z.npz", tmp_path / "z_labels.npy")


def test_save_rejects_invalid_and_writes_nothing(tmp_path: Path) -> None:
    x, y = _arrays()
    with pytest.raises(DataError, match="dtype"):
        save_patch_set(PatchSet("bad", x.astype(np.int16), y), tmp_path / "p.npy", tmp_path / "l.npy")
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while writing the second file leaves neither target nor temp files, and keeps old files."""
    x, y = _arrays()
    old_x, old_y = _arrays(4, seed=1)
    save_patch_set(PatchSet("old", old_x, old_y), tmp_path / "p.npy", tmp_path / "l.npy")
    real_save = np.save
    calls = []

    def failing_save(fh, arr, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"partial")
            raise OSError("disk full")
        return real_save(fh, arr, *a, **k)

    monkeypatch.setattr(patchfile.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_patch_set(PatchSet("new", x, y), tmp_path / "p.npy", tmp_path / "l.npy")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.npy", "p.npy"]  # no temp files left
    ps = load_patch_file(tmp_path / "p.npy", tmp_path / "l.npy")
    np.testing.assert_array_equal(ps.patches, old_x)  # old build untouched

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    calls.clear()
    monkeypatch.setattr(patchfile.np, "save", failing_save)
    with pytest.raises(OSError):
        save_patch_set(PatchSet("new", x, y), fresh / "p.npy", fresh / "l.npy")
    assert os.listdir(fresh) == []
