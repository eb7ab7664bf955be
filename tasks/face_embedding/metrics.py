"""Face verification metrics, the LFW protocol (torchmetrics has no fold-wise verification metric).

Distances are squared L2 between unit embeddings (0..4); a pair is called "same" when its distance is
below the threshold. Accuracy: for each fold, the threshold that is best on the other folds, applied to
it; the mean over folds. VAL@FAR (FaceNet): per fold, the largest threshold whose false-accept rate on the
other folds stays within the target, then the true-accept rate on the fold. TAR@FAR over all pairs, only where
the pair set has enough negatives to resolve that FAR; otherwise ``None`` and the smallest resolvable FAR.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["squared_distances", "tar_at_far", "verification_metrics"]

DEFAULT_THRESHOLDS = np.arange(0.0, 4.0, 0.001)


def squared_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise squared L2 distance."""
    return ((np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)) ** 2).sum(axis=1)


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> tuple[float | None, float]:
    """True-accept rate at a false-accept rate over all pairs, and the smallest FAR this set can resolve.

    Returns (None, smallest FAR) when there are fewer than 1 / far negative pairs.
    """
    negatives = np.sort(distances[~same])
    smallest = 1.0 / max(len(negatives), 1)
    if far < smallest:
        return None, smallest
    allowed = int(np.floor(far * len(negatives) + 1e-9))  # false accepts the target permits
    threshold = negatives[allowed] if allowed < len(negatives) else np.inf  # accept d < threshold
    return float((distances[same] < threshold).mean()), smallest


def verification_metrics(
    distances: np.ndarray, same: np.ndarray, folds: np.ndarray, thresholds: np.ndarray = DEFAULT_THRESHOLDS,
    val_far: float = 1e-3, tar_far: float = 1e-4,
) -> dict[str, Any]:
    """The LFW protocol on per-pair distances; ``folds`` gives each pair's fold (one fold: no cross-validation)."""
    distances, same, folds = np.asarray(distances), np.asarray(same, dtype=bool), np.asarray(folds)
    accepted = distances[None, :] < thresholds[:, None]  # (thresholds, pairs)
    correct = accepted == same[None, :]
    fold_ids = np.unique(folds)
    accuracies, best_thresholds, vals, fars = [], [], [], []
    for fold in fold_ids:
        test = folds == fold
        train = ~test if len(fold_ids) > 1 else test
        best = int(np.argmax(correct[:, train].mean(axis=1)))
        accuracies.append(correct[best, test].mean())
        best_thresholds.append(thresholds[best])
        train_negatives = train & ~same
        far_train = accepted[:, train_negatives].mean(axis=1) if train_negatives.any() else np.zeros(len(thresholds))
        within = np.flatnonzero(far_train <= val_far)
        index = within[-1] if len(within) else 0
        test_positives, test_negatives = test & same, test & ~same
        vals.append(accepted[index, test_positives].mean() if test_positives.any() else np.nan)
        fars.append(accepted[index, test_negatives].mean() if test_negatives.any() else np.nan)
    tar, smallest_far = tar_at_far(distances, same, tar_far)
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "threshold": float(np.mean(best_thresholds)),
        "val": float(np.nanmean(vals)),
        "far": float(np.nanmean(fars)),
        "tar_at_far": tar,
        "smallest_far": smallest_far,
        "auc": float(roc_auc_score(same, -distances)) if 0 < same.sum() < len(same) else float("nan"),
        "pairs": int(len(distances)),
    }
