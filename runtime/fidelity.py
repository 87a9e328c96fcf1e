"""How closely a candidate's scores follow the reference's, in measures that tell quantization from noise.

A category's FPR95 is read where the ROC crosses 95% TPR. Where the ROC is steep there (VIS-NIR field:
FPR95 near 30%), moving a few matching pairs' scores by a hair moves FPR95 by points, so a fixed budget on
one category's ΔFPR95 measures the ROC's slope as much as the candidate's fidelity. Three measures that do
not hinge on that slope sit beside ΔFPR95 here:

- ``delta_ci``: a paired bootstrap interval of ΔFPR95 (pairs resampled with replacement, the same draw
  for reference and candidate), so a delta can be read against the test set's own sampling noise;
- ``logit_rms``: the RMS difference of the two models' logits on every pair (the score before the
  sigmoid: what quantization perturbs, independent of labels and thresholds);
- ``tpr_delta``: the candidate's TPR minus the reference's (points) at the reference's FPR95 threshold: how
  many matching pairs change side at the operating point that FPR95 describes.

numpy only (JetPack 5: Python 3.8, numpy 1.24); FPR95 itself comes from rrl_edge.metrics.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

# The pass rule (rrl_edge.runtime.parity.failures), set from benchmarks/int8_proof.py on the shipped models
# (docs/int8-proof.md). Worst category's logit RMS: FP16-rounded weights 0.005-0.017, the export's INT8
# 0.08-0.17, INT8 of every layer (the layers the export keeps float included) 0.41-0.62 on VIS-NIR. ΔTPR at
# the reference's threshold: the export's INT8 at most 0.42 points in any category, every-layer INT8 1.24-1.98.
MAX_LOGIT_RMS = 0.30  # in every category
MAX_TPR_DELTA = 1.0  # points, in every category...
TPR_DELTA_PAIRS = 3  # ... or this many matching pairs, where a category has fewer than 300 (a quick proof)
MIN_AGREEMENT = 0.99  # same decision at the operating threshold, pooled over all pairs

BOOTSTRAP_DRAWS = 1000  # resamples of each category's pairs
BOOTSTRAP_SEED = 0  # fixed: the same candidate gets the same interval on every run
BOOTSTRAP_CHUNK = 100  # draws held in memory at once
INTERVAL = 0.95  # two-sided coverage of the bootstrap interval
TARGET_TPR = 0.95
# Scores arrive as float32 probabilities, spaced 6e-8 apart just below 1: at a logit of 15 one rounding step of
# the output moves the logit by 0.2, so two exact backends (PyTorch and the FP32 ONNX) differed by a logit RMS of
# 0.05 with a clip at 1e-7. Clipped at 1e-5 (|logit| <= 11.5) one step moves it by at most 0.006, and what is
# clipped away are pairs decided by a margin no quantization crosses.
LOGIT_CLIP = 1e-5


def logits(scores: np.ndarray) -> np.ndarray:
    """The logit of match probabilities (float64), clipped to where a float32 probability still holds it."""
    p = np.clip(np.asarray(scores, dtype=np.float64), LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(p / (1.0 - p))


def logit_rms(reference: np.ndarray, candidate: np.ndarray) -> float:
    """RMS of the logit difference over all pairs."""
    diff = logits(candidate) - logits(reference)
    return float(np.sqrt(np.mean(diff * diff)))


def reference_threshold(labels: np.ndarray, reference: np.ndarray) -> float:
    """A score at which the reference accepts 95% of the matching pairs (its FPR95 operating point).

    Halfway between the last matching pair accepted and the next one down: a threshold on a pair's own
    score would let a rounding-sized change of that one pair (FP32 ONNX against PyTorch) read as a ΔTPR."""
    positives = np.sort(np.asarray(reference, dtype=np.float64)[np.asarray(labels) == 1])
    k = int(np.floor((1.0 - TARGET_TPR) * len(positives)))
    if k == 0:
        return float(positives[0])
    return float(0.5 * (positives[k - 1] + positives[k]))


def tpr_delta(labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray) -> float:
    """Candidate TPR minus reference TPR (points) at the reference's FPR95 threshold."""
    threshold = reference_threshold(labels, reference)
    positives = np.asarray(labels) == 1
    ref = float(np.mean(np.asarray(reference)[positives] >= threshold))
    cand = float(np.mean(np.asarray(candidate)[positives] >= threshold))
    return 100.0 * (cand - ref)


def tpr_delta_limit(positives: int) -> float:
    """The |ΔTPR| a category of ``positives`` matching pairs may show: MAX_TPR_DELTA points, or TPR_DELTA_PAIRS
    pairs changing side where one pair is worth more than a third of a point (64 matching pairs: 4.7 points)."""
    return max(MAX_TPR_DELTA, 100.0 * TPR_DELTA_PAIRS / max(positives, 1))


def _weighted_fpr95(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """FPR95 (%) of one score set under each row of ``weights`` (draws x pairs): the ROC of
    rrl_edge.metrics.roc_points with every pair counted as often as its weight, read at TPR 0.95 by
    linear interpolation as np.interp does. With weights of one it equals rrl_edge.metrics.fpr95."""
    order = np.argsort(-scores, kind="mergesort")
    ranked = scores[order]
    hits = labels[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]  # the last index of each distinct score
    w = weights[:, order]
    tps = np.cumsum(w * hits, axis=1)[:, last]
    fps = np.cumsum(w * (1.0 - hits), axis=1)[:, last]
    zeros = np.zeros((w.shape[0], 1))
    tpr = np.hstack([zeros, tps / tps[:, -1:]])
    fpr = np.hstack([zeros, fps / fps[:, -1:]])
    # np.interp's rule: the segment j with tpr[j] <= 0.95 < tpr[j + 1]
    j = np.sum(tpr <= TARGET_TPR, axis=1) - 1
    j = np.clip(j, 0, tpr.shape[1] - 2)
    rows = np.arange(w.shape[0])
    t0, t1, f0, f1 = tpr[rows, j], tpr[rows, j + 1], fpr[rows, j], fpr[rows, j + 1]
    span = np.where(t1 > t0, t1 - t0, 1.0)
    at = np.where(t1 > t0, f0 + (TARGET_TPR - t0) * (f1 - f0) / span, np.where(t0 >= TARGET_TPR, f0, f1))
    return 100.0 * at


def bootstrap_deltas(labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray,
                     draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """ΔFPR95 (candidate - reference, points) under ``draws`` paired resamples of the pairs.

    Each resample draws the pairs of each class with replacement (stratified: both classes keep their
    counts, so every resample has an FPR95), and the same draw weighs both score sets."""
    labels = np.asarray(labels).ravel()
    reference = np.asarray(reference, dtype=np.float64).ravel()
    candidate = np.asarray(candidate, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(labels == value) for value in (0, 1)]
    out = []
    for start in range(0, draws, BOOTSTRAP_CHUNK):
        size = min(BOOTSTRAP_CHUNK, draws - start)
        weights = np.zeros((size, labels.size))
        for idx in classes:
            weights[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=size)
        out.append(_weighted_fpr95(labels, candidate, weights) - _weighted_fpr95(labels, reference, weights))
    return np.concatenate(out)


def interval(deltas: np.ndarray) -> Tuple[float, float]:
    """The central INTERVAL of bootstrap deltas (percentile interval)."""
    tail = 100.0 * (1.0 - INTERVAL) / 2.0
    lo, hi = np.percentile(deltas, [tail, 100.0 - tail])
    return float(lo), float(hi)
