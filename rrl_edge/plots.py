"""Curves people compare, as PNGs: ROC curves of every method and category (eval, parity).

A core module (matplotlib only, imported inside the function) so that both evaluation and the device-side
parity check draw the same plot without one importing the other.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

import numpy as np

from rrl_edge.atomic import save_figure


def plot_roc(curves: Mapping[str, Mapping[str, tuple]], path: os.PathLike, title: Optional[str] = None) -> None:
    """One PNG: ROC curves of every (method, category), FPR on a log axis, TPR = 0.95 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for method, per_cat in curves.items():
        style = "-" if method == next(iter(curves)) else "--"
        for cat, (fpr, tpr) in per_cat.items():
            ax.plot(np.maximum(fpr, 1e-4) * 100, tpr, style, lw=1, label=f"{method} {cat}")
    ax.axhline(0.95, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("false positive rate (%)")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_score_histograms(scores: np.ndarray, labels: np.ndarray, path: os.PathLike, title: Optional[str] = None) -> None:
    """One PNG: the score distributions of matches and non-matches (log counts), the 95 %-TPR threshold marked,
    so a person sees at a glance how far apart the two are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel()
    pos, neg = scores[labels == 1], scores[labels == 0]
    bins = np.linspace(0.0, 1.0, 51)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(pos, bins=bins, alpha=0.6, label=f"matches ({pos.size})", color="tab:green")
    ax.hist(neg, bins=bins, alpha=0.6, label=f"non-matches ({neg.size})", color="tab:red")
    threshold = float(np.quantile(pos, 0.05))  # 95 % of matches score at least this
    ax.axvline(threshold, color="k", lw=0.8, ls="--", label=f"95 % of matches above {threshold:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.set_ylabel("pairs")
    ax.set_title(title or "score distributions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
