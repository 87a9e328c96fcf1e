"""The patch-cutting flags that the commands reading image-pair folders share (data build, train, eval), and
the PatchConfig and data folder they give.

argparse and the standard library at import: the CLI builds every sub-parser, also on a device without OpenCV,
so the protocol and the builder load when these run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from rrl_edge.argtypes import positive_int, unit_fraction

PATCH_CUTTING = "patch cutting (image-pair folders)"  # the --help group train and eval show these flags in


def add_patch_options(p: Any) -> None:
    """The patch-cutting flags (image-pair folders only) on a parser or an argument group."""
    from rrl_edge.data.protocol import (
        DEFAULT_EVAL_NEGATIVES, DEFAULT_EVAL_SAMPLING, DEFAULT_TRAIN_NEGATIVES, DEFAULT_TRAIN_SAMPLING,
        KEYPOINT_SAMPLINGS, NEGATIVE_RULES,
    )

    p.add_argument("--seed", type=int, default=0, help="seed of the patch cutting and splits (default %(default)s)")
    p.add_argument("--keypoint-sampling", choices=tuple(KEYPOINT_SAMPLINGS), default=None,
                   help=f"val/test keypoints: uniform over the whole response range or strongest first "
                        f"(default {DEFAULT_EVAL_SAMPLING})")
    p.add_argument("--negatives", choices=tuple(NEGATIVE_RULES), default=None,
                   help=f"val/test negatives: far (>= 64 px) or near (64-128 px, Chebyshev) (default {DEFAULT_EVAL_NEGATIVES})")
    p.add_argument("--train-keypoint-sampling", choices=tuple(KEYPOINT_SAMPLINGS), default=None,
                   help=f"training keypoints (default {DEFAULT_TRAIN_SAMPLING})")
    p.add_argument("--train-negatives", choices=tuple(NEGATIVE_RULES), default=None,
                   help=f"training negatives (default {DEFAULT_TRAIN_NEGATIVES}: half near, half far)")
    p.add_argument("--train-keypoints", type=positive_int, default=None, help="positive pairs per training image")
    p.add_argument("--eval-keypoints", type=positive_int, default=None, help="positive pairs per val/test image")
    p.add_argument("--val-images", type=positive_int, default=None, help="VIS-NIR country images held out for validation")
    p.add_argument("--test-fraction", type=unit_fraction, default=None,
                   help="share of a RoadScene or own-pairs folder's images in the test split (default 0.2; 1: every "
                        "pair, to score a folder you will not train on)")
    p.add_argument("--train-images", type=positive_int, default=None,
                   help="cut only this many training images (a seeded draw; e.g. a fine-tuning curve)")
    p.add_argument("--detector", choices=("sift", "fast"), default=None, help="keypoint detector on the VIS image (default sift)")


def patch_config(args: argparse.Namespace):  # -> PatchConfig
    """The PatchConfig the patch-cutting flags ask for: PatchConfig's defaults where a flag was not given."""
    from rrl_edge.data.build import PatchConfig

    overrides = {"seed": args.seed}
    if args.train_keypoints:
        overrides["train_keypoints_per_image"] = args.train_keypoints
    if args.eval_keypoints:
        overrides["eval_keypoints_per_image"] = args.eval_keypoints
    if args.val_images:
        overrides["val_images"] = args.val_images
    if args.test_fraction:
        overrides["roadscene_test_fraction"] = args.test_fraction
    if getattr(args, "train_images", None):
        overrides["train_images"] = args.train_images
    if args.detector:
        overrides["detector"] = args.detector
    for name in ("keypoint_sampling", "negatives", "train_keypoint_sampling", "train_negatives"):
        if getattr(args, name, None):
            overrides[name] = getattr(args, name)
    return PatchConfig(**overrides)


def data_path(value: Optional[str]) -> Path:
    """A --data folder or file, or (not given) the shared VIS-NIR set."""
    if value:
        return Path(value)
    from rrl_edge.data.build import default_dataset

    return default_dataset()
