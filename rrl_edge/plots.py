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
