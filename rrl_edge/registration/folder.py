"""Registering a folder of pairs from two unaligned cameras, so that ``eval``, ``train`` and ``data build`` read it.

Fine-tuning for a new camera pair needs registered pairs, and a user with two cameras has unaligned ones.
``register_folder`` registers every ``vis/NAME`` + ``other/NAME`` pair and writes a ``pairs`` folder in which each
pair the registration is sure of keeps both images untouched (copied) and gains ``warp/STEM.npy``: the affine VIS
pixel -> other pixel, the convention of VIS-NIR's warped categories, so the patch builder unwarps it with the same
valid mask (no resampled image is written, no black fill becomes content). Pairs it is unsure of or cannot register
are left out, each listed in ``REGISTRATION.json`` with the reason; every registered pair gets an overlay in
``overlays/`` for a person to judge. The folder is written beside its destination and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from tqdm import tqdm

from rrl_edge.atomic import check_replaceable_folder, install_folder
from rrl_edge.data.layouts import PAIRS_CATEGORY, PAIRS_OTHER_DIR, PAIRS_VIS_DIR, PAIRS_WARP_DIR, list_named_pairs
from rrl_edge.errors import DataError
from rrl_edge.paths import sweep_stale
from rrl_edge.registration.estimate import RegistrationFailed
from rrl_edge.registration.geometry import warp_to_vis
from rrl_edge.registration.images import read_pair
from rrl_edge.registration.pipeline import RegisterConfig, register_images
from rrl_edge.registration.visualize import checkerboard, write_png
from rrl_edge.runtime.runner import Runner

REGISTRATION_MANIFEST = "REGISTRATION.json"
REGISTRATION_KIND = "an rrl-edge registered folder"
OVERLAY_DIR = "overlays"
FORMAT_VERSION = 1
SURE, UNSURE, FAILED = "sure", "unsure", "failed"


@dataclass
class PairOutcome:
    name: str  # file name in vis/ and other/
    status: str  # SURE (kept), UNSURE or FAILED (left out)
    reason: str = ""  # why it was left out
    result: Optional[Dict[str, Any]] = None  # RegisterResult.to_json(): the affine, confidence, path, seconds

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"name": self.name, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.result is not None:
            out["registration"] = self.result
        return out


def _register_one(vis_path: Path, other_path: Path, runner: Runner, cfg: RegisterConfig,
                  tmp: Path, stem: str) -> PairOutcome:
    """Register one pair; write its overlay (always) and, when sure, its warp and both images."""
    name = vis_path.name
    vis, other = read_pair(vis_path, other_path)  # a DataError (unreadable, flat, too small) ends the command
    try:
        res = register_images(vis, other, runner, cfg)
    except RegistrationFailed as exc:
        return PairOutcome(name, FAILED, str(exc))
    write_png(checkerboard(vis, warp_to_vis(other, res.affine, vis.shape)), tmp / OVERLAY_DIR / f"{stem}.png")
    sure = res.confidence
    doubt = "registered without a network to check it" if sure is None else sure.doubt()
    out = PairOutcome(name, UNSURE if doubt else SURE, doubt or "", res.to_json())
    if out.status == SURE:
        np.save(tmp / PAIRS_WARP_DIR / f"{stem}.npy", np.asarray(res.affine, np.float64))
        shutil.copyfile(vis_path, tmp / PAIRS_VIS_DIR / name)
        shutil.copyfile(other_path, tmp / PAIRS_OTHER_DIR / name)
    return out


def register_folder(source: Path, out: Path, runner: Runner, cfg: RegisterConfig = RegisterConfig(),
                    progress: bool = True, engine: str = "") -> Dict[str, Any]:
    """Register every pair of ``source`` (``vis/`` + ``other/``, same file names, any sizes) into the ``pairs``
    folder ``out``; returns its manifest. ``out`` is whole or untouched (an earlier registered folder is replaced)."""
    pairs = list_named_pairs(source, PAIRS_VIS_DIR, PAIRS_OTHER_DIR, PAIRS_CATEGORY)  # a missing partner: DataError
    stems = [p.pair_id for p in pairs]
    for stem in stems:
        if stems.count(stem) > 1:  # warp/STEM.npy would be shared
            raise DataError(f"{source / PAIRS_VIS_DIR}: two images share the name {stem!r} (different extensions); "
                            "rename one")
    out = out.expanduser().absolute()
    check_replaceable_folder(out, REGISTRATION_MANIFEST, REGISTRATION_KIND)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out.parent, [f".{out.name}.tmp-*", f".{out.name}.old-*"])  # left by a killed run
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for sub in (PAIRS_VIS_DIR, PAIRS_OTHER_DIR, PAIRS_WARP_DIR, OVERLAY_DIR):
        (tmp / sub).mkdir(parents=True)
    outcomes: List[PairOutcome] = []
    try:
        bar = tqdm(pairs, desc="register-folder", unit="pair", disable=not progress)
        for pair in bar:
            outcomes.append(_register_one(pair.vis_path, pair.other_path, runner, cfg, tmp, pair.pair_id))
            bar.set_postfix(sure=sum(o.status == SURE for o in outcomes))
        counts = {s: sum(o.status == s for o in outcomes) for s in (SURE, UNSURE, FAILED)}
        text = json.dumps({"format_version": FORMAT_VERSION, "source": str(source), "engine": engine,
                           "counts": counts, "pairs": [o.to_json() for o in outcomes]}, indent=1)
        (tmp / REGISTRATION_MANIFEST).write_text(text)
        manifest: Dict[str, Any] = json.loads(text)
        install_folder(tmp, out, REGISTRATION_MANIFEST, REGISTRATION_KIND)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest
