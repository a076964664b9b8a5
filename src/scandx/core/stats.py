"""Bootstrap confidence intervals, resampling patients rather than images.

Images of one patient are correlated; resampling whole patients (a cluster
bootstrap) keeps the intervals honest when a patient has several images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_ci(
    statistic: Callable[[np.ndarray], dict[str, float]],
    groups: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, list[float]]:
    """Percentile CIs for every key ``statistic(indices)`` returns.

    ``statistic`` takes an index array into the cases; ``groups`` gives each
    case's patient. Replicates where a metric is undefined (nan) are dropped.
    """
    groups = np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    singletons = len(uniq) == len(groups)
    first = np.array([m[0] for m in members])
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        idx = first[pick] if singletons else np.concatenate([members[p] for p in pick])
        for key, value in statistic(idx).items():
            samples.setdefault(key, []).append(value)
    out = {}
    for key, values in samples.items():
        v = np.asarray(values, dtype=float)
        v = v[~np.isnan(v)]
        if len(v) == 0:
            out[key] = [float("nan"), float("nan")]
        else:
            out[key] = [float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))]
    return out
