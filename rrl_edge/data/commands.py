"""``rrl-edge data build`` and ``rrl-edge data synth``: sub-commands added by :func:`add_commands`.

argparse and the standard library at import: OpenCV and the builder load inside the commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rrl_edge.argtypes import hidden_alias, positive_int
from rrl_edge.data.options import add_patch_options, data_path, patch_config


def cmd_data_build(args: argparse.Namespace) -> int:
    from rrl_edge.data.build import build_dataset, ensure_dataset
    from rrl_edge.paths import guard_outputs

    data = data_path(args.data)
    guard_outputs({"--data": [data]}, folders={"--out-dir": (args.out_dir, None)})  # the whole --out-dir is replaced
    config = patch_config(args)
    if args.out_dir:
        manifest = build_dataset(data, Path(args.out_dir), config, progress=not args.quiet)
        out = Path(args.out_dir)
    else:
        out = ensure_dataset(data, config, progress=not args.quiet)
        manifest = json.loads((out / "manifest.json").read_text())
    print(f"patches of {data} in {out}")
    counts = manifest.get("counts", {})
    print(json.dumps(counts, indent=2))
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    """Render synthetic other-spectrum partners of VIS images into a pairs folder that train --data reads."""
    from rrl_edge.data.synthetic import vis_images, write_synthetic_pairs
    from rrl_edge.paths import guard_outputs

    source = Path(args.source)
    guard_outputs({"--from": [source]}, folders={"--out-dir": (args.out_dir, None)})  # the whole folder is replaced
    paths, origin = vis_images(source)
    manifest = write_synthetic_pairs(paths, Path(args.out_dir), copies=args.copies, seed=args.seed,
                                     progress=not args.quiet, origin=origin)
    print(f"{len(manifest['pairs'])} synthetic pairs from the {origin} in {args.out_dir}; "
          f"train with --data {args.out_dir} beside your real pairs")
    return 0


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `rrl-edge data build` and `rrl-edge data synth` on the CLI's sub-parsers."""
    p = sub.add_parser("data", help="patch datasets from registered image pairs")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    b = data_sub.add_parser("build", help="cut 64x64 patch pairs (cached, with a manifest)")
    b.add_argument("--data", help="folder of image pairs (vis-nir or roadscene layout); default: the shared VIS-NIR set")
    hidden_alias(b, "--out", b.add_argument("--out-dir", help="write this folder instead of the cache"))
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    add_patch_options(b)
    b.set_defaults(func=cmd_data_build)

    b = data_sub.add_parser("synth", help="synthetic cross-spectral pairs (exact geometry) from visible images")
    b.add_argument("--from", dest="source", required=True, metavar="DIR",
                   help="a dataset folder (its training split's VIS images) or any folder of visible images")
    one = b.add_mutually_exclusive_group(required=True)  # --out-dir, or its old spelling --out
    hidden_alias(one, "--out", one.add_argument("--out-dir", help="the pairs folder to write (vis/ + other/ + "
                                                                  "SYNTHETIC.json)"))
    b.add_argument("--copies", type=positive_int, default=1, help="renderings per source image (default %(default)s)")
    b.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_data_synth)
