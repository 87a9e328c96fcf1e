"""Accuracy parity: does an artifact (ONNX, INT8, engine) score real pairs like the model it came from?

One comparison for the whole project: ``compare`` measures a candidate's scores against a reference's
per category (FPR95 of both, the difference, decision agreement at 0.5, the largest score difference) and
decides the budget; `rrl-edge parity` and the export-time INT8 proof (``rrl_edge.export.parity``) both use it.
``run_parity`` scores the reference and the candidates through the runners, so any backend can be either.

numpy only at import: scikit-learn (FPR95), matplotlib (plot) and the backends load when used.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from rrl_edge.errors import InputError
from rrl_edge.fpr95_table import DIGITS as TABLE_DIGITS, FPR95Table, ProtocolInfo
from rrl_edge.runtime.fidelity import (MAX_LOGIT_RMS, MIN_AGREEMENT, bootstrap_deltas, interval, logit_rms, tpr_delta,
                                       tpr_delta_limit)
from rrl_edge.runtime.inputs import InputSet
from rrl_edge.runtime.runner import Runner, score_pairs

THRESHOLD = 0.5  # a score at or above it says "same place"
DEFAULT_BUDGET = 0.3  # FPR95 points: `rrl-edge parity --budget` and the export's INT8 proof
DIGITS = TABLE_DIGITS  # FPR95 values and deltas are reported, and judged, rounded to 1e-4 points (4)

Scores = Mapping[str, np.ndarray]


def _fpr95() -> Any:
    try:
        from rrl_edge.metrics import fpr95
    except ImportError as exc:
        raise InputError(f"parity needs scikit-learn for FPR95 (pip install scikit-learn): {exc}") from exc
    return fpr95


def _check_lengths(labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray) -> None:
    if not (len(labels) == len(reference) == len(candidate)):
        raise InputError(f"parity: {len(labels)} labels, {len(reference)} reference and {len(candidate)} candidate scores")


def compare_category(labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray, fpr95_reference: float,
                     fpr95_candidate: float) -> Dict[str, Any]:
    """One category's FPR95s (from ``compare``'s FPR95Tables), their difference, the agreement and the largest
    |difference|."""
    f_ref, f_cand = round(fpr95_reference, DIGITS), round(fpr95_candidate, DIGITS)
    same = (reference >= THRESHOLD) == (candidate >= THRESHOLD)
    deltas = bootstrap_deltas(labels, reference, candidate)
    lo, hi = interval(deltas)
    return {
        "fpr95_reference": f_ref,
        "fpr95": f_cand,
        "delta": round(f_cand - f_ref, DIGITS),
        "agreement": round(float(np.mean(same)), 6),
        "max_abs_diff": float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64)))),
        "pairs": int(len(labels)),
        "agreeing_pairs": int(np.sum(same)),
        "delta_ci": [round(lo, DIGITS), round(hi, DIGITS)],
        "logit_rms": round(logit_rms(reference, candidate), DIGITS),
        "tpr_delta": round(tpr_delta(labels, reference, candidate), DIGITS),
        "tpr_delta_limit": round(tpr_delta_limit(int(np.sum(labels == 1))), DIGITS),
        "bootstrap_deltas": deltas,
    }


def compare(labels: Scores, reference: Scores, candidate: Scores, budget: float,
            protocol: ProtocolInfo = None) -> Dict[str, Any]:
    """One candidate against the reference on every category, and the verdict of ``failures``.

    The FPR95s of both, per category and their means, are FPR95Tables (rrl_edge.fpr95_table: the mean over
    categories of the unrounded values), written whole as ``fpr95_tables`` {"reference", "candidate"} and
    copied into the per-category ``fpr95_reference`` / ``fpr95`` and ``mean_fpr95_reference`` / ``mean_fpr95``
    the rule and the tables read. ``agreement`` and ``logit_rms`` are pooled over all pairs;
    ``mean_delta_ci`` is the paired bootstrap interval of the mean ΔFPR95 over categories.
    """
    if not labels:
        raise InputError("parity: no categories to compare")
    for name in labels:
        _check_lengths(labels[name], reference[name], candidate[name])
    fpr95 = _fpr95()
    ref_table = FPR95Table.from_scores(labels, reference, protocol, fpr95)
    cand_table = FPR95Table.from_scores(labels, candidate, protocol, fpr95)
    categories = {name: compare_category(labels[name], reference[name], candidate[name], ref_table[name].fpr95,
                                         cand_table[name].fpr95) for name in labels}
    agreeing = sum(c.pop("agreeing_pairs") for c in categories.values())
    # the categories were drawn apart, so draw b of the mean is the mean of every category's draw b
    mean_draws = np.mean([c.pop("bootstrap_deltas") for c in categories.values()], axis=0)
    pairs = sum(c["pairs"] for c in categories.values())
    mean_ref, mean_cand = round(ref_table.mean_fpr95, DIGITS), round(cand_table.mean_fpr95, DIGITS)
    mean_delta = round(mean_cand - mean_ref, DIGITS)
    worst = max([abs(c["delta"]) for c in categories.values()] + [abs(mean_delta)])
    lo, hi = interval(mean_draws)
    result = {
        "categories": categories,
        "mean_fpr95_reference": mean_ref,
        "mean_fpr95": mean_cand,
        "mean_delta": mean_delta,
        "mean_delta_ci": [round(lo, DIGITS), round(hi, DIGITS)],
        "worst_abs_delta": round(worst, DIGITS),
        "logit_rms": round(logit_rms(np.concatenate([reference[n] for n in labels]),
                                     np.concatenate([candidate[n] for n in labels])), DIGITS),
        "worst_logit_rms": round(max(c["logit_rms"] for c in categories.values()), DIGITS),
        "worst_abs_tpr_delta": round(max(abs(c["tpr_delta"]) for c in categories.values()), DIGITS),
        "agreement": round(agreeing / pairs, 6),
        "max_abs_diff": max(c["max_abs_diff"] for c in categories.values()),
        "pairs": pairs,
        "budget": budget,
        "fpr95_tables": {"reference": ref_table.to_json(), "candidate": cand_table.to_json()},
    }
    result["failures"] = failures(result)
    result["passed"] = not result["failures"]
    return result


def failures(result: Mapping[str, Any]) -> List[str]:
    """The pass rule; each broken condition as a short reason (none: passed). See docs/int8-proof.md.

    1. the mean FPR95 over categories moves by at most the budget (points): the number a user compares;
    2. no category's ΔFPR95 is beyond the budget beyond doubt: its whole bootstrap interval lies outside
       ±budget (a category on a steep ROC moves by points under any perturbation; only a move the test
       set's own noise cannot explain fails);
    3. in every category the logit RMS difference is at most MAX_LOGIT_RMS and the TPR at the reference's
       FPR95 threshold moves by at most MAX_TPR_DELTA points (or TPR_DELTA_PAIRS pairs, on a small proof): the
       scores themselves follow the reference, whatever the ROC's slope;
    4. at least MIN_AGREEMENT of the pairs get the same decision at the operating threshold.
    """
    budget = result["budget"]
    out = []
    if abs(result["mean_delta"]) > budget:
        out.append(f"mean FPR95 moved {result['mean_delta']:+.2f} points (budget {budget})")
    for name, c in result["categories"].items():
        lo, hi = c["delta_ci"]
        if lo > budget or hi < -budget:
            out.append(f"{name} FPR95 moved {c['delta']:+.2f} points, 95% interval [{lo:+.2f}, {hi:+.2f}] "
                       f"beyond the budget of {budget}")
        if abs(c["tpr_delta"]) > c["tpr_delta_limit"]:
            out.append(f"{name} TPR at the reference's FPR95 threshold moved {c['tpr_delta']:+.2f} points "
                       f"(limit {c['tpr_delta_limit']:g})")
        if c["logit_rms"] > MAX_LOGIT_RMS:
            out.append(f"{name} logit RMS difference {c['logit_rms']:.3f} (limit {MAX_LOGIT_RMS})")
    if result["agreement"] < MIN_AGREEMENT:
        out.append(f"decisions at score {THRESHOLD} agree on {100 * result['agreement']:.2f}% of pairs "
                   f"(limit {100 * MIN_AGREEMENT:.0f}%)")
    return out


# ------------------------------------------------------------------------------------------ scoring artifacts


def open_all(paths: Sequence[Union[str, Path]], threads: Optional[int] = None) -> List[Runner]:
    """Open every artifact before scoring any: a missing or unusable one fails the run at once, naming it."""
    from rrl_edge.runtime.registry import make_runner, runner_options

    runners: List[Runner] = []
    try:
        for path in paths:
            runner = make_runner(path, **runner_options(path, threads=threads))
            runner.open()
            runners.append(runner)
    except BaseException:
        for runner in runners:
            runner.close()
        raise
    return runners


def score_sets(runner: Runner, sets: Mapping[str, InputSet], label: str, batch_size: int, show_progress: bool) -> Dict[str, np.ndarray]:
    """The runner's scores of every category (one progress bar per category)."""
    return {name: score_pairs(runner, s.patches, batch_size, show_progress, f"{label} {name}", source=f"{name} pairs")
            for name, s in sets.items()}


def require_labels(sets: Mapping[str, InputSet], data: Union[str, Path]) -> Dict[str, np.ndarray]:
    unlabeled = [name for name, s in sets.items() if s.labels is None]
    if unlabeled:
        raise InputError(f"{data}: no labels for {', '.join(unlabeled)}; parity measures FPR95 and needs labelled "
                         "pairs (a labels .npy beside the patch file, or --labels)")
    labels = {name: np.asarray(s.labels) for name, s in sets.items()}
    for name, one in labels.items():  # before any scoring: FPR95 needs both classes in every category
        if one.size and one.min() == one.max():
            raise InputError(f"{data} [{name}]: all {one.size} pairs are labelled {int(one.flat[0])}; FPR95 needs "
                             "both matching (1) and non-matching (0) pairs")
    return labels


def short_names(paths: Sequence[str]) -> List[str]:
    """File names where they tell the artifacts apart, else the paths as given."""
    names = [Path(p).name for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


def run_parity(
    reference: Union[str, Path],
    candidates: Sequence[Union[str, Path]],
    sets: Mapping[str, InputSet],
    budget: float,
    batch_size: int = 256,
    threads: Optional[int] = None,
    show_progress: bool = True,
    data: Union[str, Path] = "data",
) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """The parity report ({"reference", "candidates": {path: compare(...) + backend, precision}, ...}) and the
    scores of every artifact keyed by its path as given (for the ROC plot)."""
    if not budget >= 0 or math.isinf(budget):
        raise InputError(f"--budget {budget}: must be a finite, non-negative number of FPR95 points")
    paths = [str(reference)] + [str(c) for c in candidates]
    repeated = sorted({p for p in paths if paths.count(p) > 1})
    if repeated:
        raise InputError(f"{repeated[0]}: given more than once (as the reference or a candidate)")
    labels = require_labels(sets, data)
    names = short_names(paths)
    runners = open_all(paths, threads)
    try:
        scores: Dict[str, Dict[str, np.ndarray]] = {}
        for path, name, runner in zip(paths, names, runners):
            scores[path] = score_sets(runner, sets, name, batch_size, show_progress)
    finally:
        for runner in runners:
            runner.close()
    ref = scores[paths[0]]
    report: Dict[str, Any] = {
        "reference": paths[0],
        "reference_backend": runners[0].backend,
        "reference_precision": runners[0].precision,
        "data": str(data),
        "pairs": {name: len(s) for name, s in sets.items()},
        "threshold": THRESHOLD,
        "budget": budget,
        "candidates": {},
    }
    for path, runner in zip(paths[1:], runners[1:]):
        result = compare(labels, ref, scores[path], budget)
        result.update(backend=runner.backend, precision=runner.precision)
        report["candidates"][path] = result
    report["passed"] = all(c["passed"] for c in report["candidates"].values())
    pooled = {path: np.concatenate([s[name] for name in sets]) for path, s in scores.items()}
    return report, pooled


# ------------------------------------------------------------------------------------------------- output


def format_markdown(report: Mapping[str, Any]) -> str:
    """One Markdown table (rows: categories and the mean; per candidate FPR95, ΔFPR95 with its 95% bootstrap
    interval, logit RMS difference, ΔTPR at the reference's threshold, agreement) and a verdict line each."""
    cands: Dict[str, Dict[str, Any]] = report["candidates"]
    names = short_names([report["reference"]] + list(cands))
    first = next(iter(cands.values()))
    head = ["category", "pairs", f"{names[0]} FPR95 (%)"]
    align = ["---", "---:", "---:"]
    for name in names[1:]:
        head += [f"{name} FPR95 (%)", "delta", "95% interval", "logit RMS", "dTPR", "agree %"]
        align += ["---:"] * 6
    lines = [
        f"Parity on {report['data']}: reference {report['reference']} ({report['reference_backend']}, "
        f"{report['reference_precision']}); delta in FPR95 points with its paired bootstrap interval; dTPR = TPR change "
        f"(points) at the reference's FPR95 threshold; agree = same decision at score {report['threshold']}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(align) + "|",
    ]

    def cells(c: Mapping[str, Any], ci: Sequence[float], tpr: str) -> List[str]:
        return [f"{c.get('fpr95', c.get('mean_fpr95', 0.0)):.2f}", f"{c.get('delta', c.get('mean_delta', 0.0)):+.2f}",
                f"[{ci[0]:+.2f}, {ci[1]:+.2f}]", f"{c['logit_rms']:.3f}", tpr, f"{100 * c['agreement']:.2f}"]

    for cat, c0 in first["categories"].items():
        row = [cat, f"{c0['pairs']:,}", f"{c0['fpr95_reference']:.2f}"]
        for c in cands.values():
            k = c["categories"][cat]
            row += cells(k, k["delta_ci"], f"{k['tpr_delta']:+.2f}")
        lines.append("| " + " | ".join(row) + " |")
    row = ["**mean**", f"{first['pairs']:,}", f"{first['mean_fpr95_reference']:.2f}"]
    for c in cands.values():
        row += cells(c, c["mean_delta_ci"], f"max {c['worst_abs_tpr_delta']:.2f}")
    lines += ["| " + " | ".join(row) + " |", ""]
    for name, c in zip(names[1:], cands.values()):
        lines.append(f"- {name} ({c['backend']}, {c['precision']}): {proof_verdict(c)}")
    return "\n".join(lines)


def plot_parity_roc(report: Mapping[str, Any], pooled: Mapping[str, np.ndarray], labels: np.ndarray, path: Union[str, Path]) -> None:
    """All artifacts' ROC curves on the pairs pooled over the categories, in one PNG (rrl_edge.plots.plot_roc)."""
    try:
        from sklearn.metrics import roc_curve

        from rrl_edge.plots import plot_roc
    except ImportError as exc:
        raise InputError(f"--plot {path}: plotting needs matplotlib and scikit-learn ({exc})") from exc
    names = short_names(list(pooled))
    curves = {}
    for name, scores in zip(names, pooled.values()):
        fpr, tpr, _ = roc_curve(labels, scores)
        curves[name] = {"(pooled)": (fpr, tpr)}
    n_cat = len(report["pairs"])
    plot_roc(curves, Path(path), title=f"ROC of {len(labels):,} test pairs pooled over {n_cat} categories")



def proof_verdict(result: Mapping[str, Any]) -> str:
    """One line: passed or not, with the measures the rule reads and every broken condition."""
    lo, hi = result["mean_delta_ci"]
    head = (f"mean FPR95 delta {result['mean_delta']:+.2f} [{lo:+.2f}, {hi:+.2f}], worst logit RMS "
            f"{result['worst_logit_rms']:.3f}, "
            f"worst |dTPR| {result['worst_abs_tpr_delta']:.2f}, agreement {100 * result['agreement']:.2f}%")
    return f"PASS ({head})" if result["passed"] else f"FAIL ({head}): " + "; ".join(result["failures"])
