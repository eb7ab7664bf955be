"""Face verification metrics, the LFW protocol (torchmetrics has no fold-wise verification metric).

Distances are squared L2 between unit embeddings (0..4); a pair is called "same" when its distance is
below the threshold. Accuracy: for each fold, the threshold that is best on the other folds, applied to
it; the mean over folds. VAL@FAR: per fold, a threshold is chosen on the other folds' false-accept-rate curve, then
the true-accept rate on the fold is its VAL (``val_threshold_rule`` says how, see ``far_threshold``). TAR@FAR over
all pairs, only where the pair set has enough negatives to resolve that FAR; otherwise ``None`` and the smallest
resolvable FAR.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["ValThresholdRule", "accept_threshold", "enrol", "far_threshold", "identification_metrics",
           "nearest_templates", "squared_distances", "tar_at_far", "verification_metrics"]

DEFAULT_THRESHOLDS = np.arange(0.0, 4.0, 0.001)

ValThresholdRule = Literal["interpolated", "grid"]


def far_threshold(far: np.ndarray, thresholds: np.ndarray, target: float, rule: ValThresholdRule) -> float:
    """The threshold at which the false-accept rate ``far`` (per threshold, non-decreasing) reaches ``target``.

    ``interpolated`` is FaceNet's published protocol (``calculate_val``): linear interpolation of the threshold on
    the FAR curve at the target, and threshold 0 where no threshold reaches it. FaceNet calls scipy's
    ``interp1d(far, thresholds, kind="slinear")``, which modern scipy refuses because the curve has flat runs
    (equal FARs); between two FAR values the interpolation runs from the last threshold of the lower run to the
    first of the upper one, which is what that call computed. Where the target equals a run's FAR, the run's
    largest threshold is taken. ``grid`` takes the largest grid threshold whose FAR stays within the target
    (no interpolation: up to one grid step lower).
    """
    if rule == "grid":
        within = np.flatnonzero(far <= target)
        return float(thresholds[within[-1]] if len(within) else thresholds[0])
    if far.max() < target:
        return 0.0
    below = np.flatnonzero(far <= target)
    if not len(below):
        return float(thresholds[0])
    low = below[-1]
    if far[low] == target:
        return float(thresholds[low])
    high = low + 1  # the first threshold past the target (far is non-decreasing)
    share = (target - far[low]) / (far[high] - far[low])
    return float(thresholds[low] + share * (thresholds[high] - thresholds[low]))


def squared_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise squared L2 distance."""
    return ((np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)) ** 2).sum(axis=1)


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> tuple[float | None, float]:
    """True-accept rate at a false-accept rate over all pairs, and the smallest FAR this set can resolve.

    Returns (None, smallest FAR) when there are fewer than 1 / far negative pairs.
    """
    negatives = distances[~same]
    threshold = accept_threshold(negatives, far)
    smallest = 1.0 / max(len(negatives), 1)
    return (None if threshold is None else float((distances[same] < threshold).mean())), smallest


def accept_threshold(negatives: np.ndarray, far: float) -> float | None:
    """The distance below which a share ``far`` of the ``negatives`` (impostor distances) is accepted (accept
    d < threshold); None when there are fewer than 1 / far of them."""
    negatives = np.sort(negatives)
    if far < 1.0 / max(len(negatives), 1):
        return None
    allowed = int(np.floor(far * len(negatives) + 1e-9))  # false accepts the target permits
    return float(negatives[allowed]) if allowed < len(negatives) else np.inf


def verification_metrics(
    distances: np.ndarray, same: np.ndarray, folds: np.ndarray, thresholds: np.ndarray = DEFAULT_THRESHOLDS,
    val_far: float = 1e-3, tar_far: float = 1e-4, val_threshold_rule: ValThresholdRule = "interpolated",
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
        val_threshold = far_threshold(far_train, thresholds, val_far, val_threshold_rule)
        test_positives, test_negatives = test & same, test & ~same
        vals.append((distances[test_positives] < val_threshold).mean() if test_positives.any() else np.nan)
        fars.append((distances[test_negatives] < val_threshold).mean() if test_negatives.any() else np.nan)
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


def enrol(embeddings: np.ndarray, identities: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """One unit-length template per identity: the mean of its unit embeddings, normalised again (FaceNet's
    practice for several images of one person). Returns the sorted identities and their templates."""
    embeddings, names = np.asarray(embeddings, dtype=np.float64), sorted(set(identities))
    owner = np.array([names.index(identity) for identity in identities])
    templates = np.stack([embeddings[owner == i].mean(axis=0) for i in range(len(names))])
    return names, templates / np.linalg.norm(templates, axis=1, keepdims=True)


def nearest_templates(probes: np.ndarray, templates: np.ndarray, top_k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Each probe's ``top_k`` nearest templates by squared L2 distance: (indices, distances), nearest first."""
    distances = ((np.asarray(probes, np.float64)[:, None, :] - templates[None, :, :]) ** 2).sum(-1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :top_k]
    return order, np.take_along_axis(distances, order, axis=1)


def identification_metrics(gallery: np.ndarray, gallery_identities: Sequence[str], probes: np.ndarray,
                           probe_identities: Sequence[str], fars: Sequence[float] = (0.01, 0.1)) -> dict[str, Any]:
    """Open-set 1:N identification (the NIST FRVT / IJB-C protocol): the gallery enrols one template per identity
    (``enrol``); a mated probe (its identity enrolled) is identified when its nearest template is its own
    identity's; an impostor probe is falsely accepted when its nearest distance is below the threshold.

    ``rank1``: identified share of the mated probes (closed-set). ``dir_at_far<f>``: the detection and
    identification rate, the share of mated probes identified with a distance below the threshold that accepts
    a share ``f`` of the impostors (``accept_threshold``, as TAR uses it); None where there are fewer than 1 / f
    impostors.
    """
    names, templates = enrol(gallery, gallery_identities)
    nearest, distances = nearest_templates(probes, templates)
    nearest, distances = nearest[:, 0], distances[:, 0]
    mated = np.array([identity in names for identity in probe_identities], dtype=bool)
    correct = np.array([names[i] == identity for i, identity in zip(nearest, probe_identities)], dtype=bool)
    if not mated.any():
        raise ValueError("open-set identification: no probe's identity is in the gallery; put some there")
    results: dict[str, Any] = {"rank1": float(correct[mated].mean()), "mated": int(mated.sum()),
                               "impostors": int((~mated).sum()), "identities": len(names)}
    for far in fars:
        threshold = accept_threshold(distances[~mated], far)
        results[f"dir_at_far{far:g}"] = (None if threshold is None
                                         else float((correct & (distances < threshold))[mated].mean()))
    return results
