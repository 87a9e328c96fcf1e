"""The main job's closing table: FPR95 per category of the evaluated model and of the deployed artifact.

    python scripts/fpr95_table.py EVAL_JSON RUN_JSON [--budget 0.3]

EVAL_JSON is what `rrl-edge eval --json` wrote (the PyTorch model), RUN_JSON what `rrl-edge run --json` wrote
(the artifact a device loads) on the same pairs. Prints a Markdown table and a verdict line; exit 1 when the
deployed mean FPR95 is more than --budget points from the evaluated one, 2 when the two runs did not score
the same categories and pair counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from rrl_edge.errors import InputError
from rrl_edge.fpr95_table import DIGITS, FPR95Table


def _read(path: str) -> Dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"fpr95_table: {path}: not a readable JSON report ({exc})") from None
    if not isinstance(data, dict):
        raise SystemExit(f"fpr95_table: {path}: not a JSON object")
    return data


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_json")
    parser.add_argument("run_json")
    parser.add_argument("--budget", type=float, default=0.3)
    args = parser.parse_args(argv)
    evaluated, deployed = _read(args.eval_json), _read(args.run_json)
    counts = deployed.get("categories")  # every set run scored: {name: pairs}
    try:  # both are FPR95Tables (rrl_edge.fpr95_table); an older run's flat "fpr95" is read too
        ev = FPR95Table.from_json(evaluated, source=args.eval_json)
        run = FPR95Table.from_json(deployed.get("fpr95"), counts if isinstance(counts, dict) else None,
                                   f"{args.run_json} [fpr95]")
    except InputError as exc:
        print(f"fpr95_table: {args.eval_json} or {args.run_json} lacks its categories or FPR95 ({exc})",
              file=sys.stderr)
        return 2
    mismatched = [n for n in ev if n not in run or ev[n].pairs is None or run[n].pairs != ev[n].pairs]
    if mismatched or set(run) != set(ev) or (isinstance(counts, dict) and set(counts) != set(ev)):
        print(f"fpr95_table: the two runs scored different pairs ({', '.join(mismatched) or 'other categories'})",
              file=sys.stderr)
        return 2
    name = f"{Path(deployed.get('artifact', args.run_json)).name} ({deployed.get('backend', '?')} " \
           f"{deployed.get('precision', '?')})"
    lines = [f"| category | pairs | PyTorch FP32 ({Path(evaluated.get('checkpoint', '?')).name}) | {name} | delta |",
             "|---|---:|---:|---:|---:|"]
    for cat, c in ev.categories.items():
        mine, theirs = round(c.fpr95, DIGITS), round(run[cat].fpr95, DIGITS)  # as the JSON files hold them
        lines.append(f"| {cat} | {c.pairs:,} | {mine:.2f} | {theirs:.2f} | {theirs - mine:+.2f} |")
    mean_eval, mean_run = round(ev.mean_fpr95, DIGITS), round(run.mean_fpr95, DIGITS)
    delta = mean_run - mean_eval
    lines.append(f"| **mean** | {ev.pairs:,} | {mean_eval:.2f} | {mean_run:.2f} | {delta:+.2f} |")
    print("\n".join(lines))
    ok = abs(delta) <= args.budget
    print(f"\nthe deployed artifact's mean FPR95 is {delta:+.2f} points from the evaluated model's: "
          f"{'within' if ok else 'OUTSIDE'} {args.budget}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
