"""Task metrics: per-step accuracy, recall-window sequence accuracy, chance
level and normalised MSE."""
from __future__ import annotations

import numpy as np

__all__ = ["predictions", "per_step_accuracy", "sequence_accuracy", "chance_level", "nmse",
           "score"]


def predictions(logits: np.ndarray) -> np.ndarray:
    """Arg-max class per step; ``logits`` has shape (T, B, k)."""
    return np.argmax(logits, axis=-1)


def per_step_accuracy(logits, task) -> float:
    """Fraction of scored steps (``task.mask``) whose arg-max equals the target."""
    ok = predictions(logits) == task.targets
    return float(ok[task.mask].mean())


def sequence_accuracy(logits, task) -> float:
    """Fraction of sequences whose every recall-window step is correct."""
    ok = (predictions(logits) == task.targets) | ~task.recall
    return float(np.all(ok, axis=0).mean())


def chance_level(task) -> dict:
    """Chance baselines.

    For memorization: the per-step accuracy of always answering blank on
    non-recall steps and guessing uniformly on recall steps, and the sequence
    accuracy ``K**-L`` of guessing. For ``kback``: ``1/K`` per step (i.i.d.),
    or the best blind strategy's accuracy given ``repeat`` is not higher
    than ``max(1/K, ...)``; we report the uniform guess ``1/K``. For regression:
    NMSE 1 (predicting the mean).
    """
    p = task.params
    if task.name == "memorization":
        K, L = p["K"], p["L"]
        frac_recall = task.recall[:, 0].mean()
        return {"per_step": float(1 - frac_recall + frac_recall / K), "sequence": K ** -L}
    if task.kind == "classification":
        return {"per_step": 1.0 / p["K"], "sequence": None}
    return {"nmse": 1.0}


def nmse(outputs, task) -> float:
    """Normalised MSE on scored steps: mean squared error / variance of target."""
    y = task.targets[task.mask]
    err = (np.asarray(outputs)[task.mask] - y) ** 2
    return float(err.mean() / y.var())


def score(outputs, task) -> dict:
    """All metrics of a task for the readout ``outputs`` (logits or values)."""
    if task.kind == "regression":
        return {"nmse": nmse(outputs, task)}
    out = {"per_step": per_step_accuracy(outputs, task)}
    if task.name == "memorization":
        out["sequence"] = sequence_accuracy(outputs, task)
    return out
