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


# below these counts a percentile bootstrap of a proportion is unreliable (few distinct
# resamples; zero width when every case agrees), so the Wilson score interval is used:
# np >= 5 and n(1 - p) >= 5 is the usual condition for normal-theory intervals
MIN_SUCCESSES_FOR_BOOTSTRAP = 5
MIN_CASES_FOR_BOOTSTRAP = 30


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927): never of zero
    width, stays inside [0, 1], and keeps its coverage near nominal for small n and for
    proportions near 0 or 1, where the bootstrap and the Wald interval collapse."""
    if n <= 0:
        return float("nan"), float("nan")
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, float(centre - half))
    hi = 1.0 if successes == n else min(1.0, float(centre + half))
    return lo, hi


def needs_exact_interval(successes: int, n: int, bootstrap: list[float] | None = None) -> bool:
    """True when a proportion's interval should be Wilson's rather than the bootstrap's:
    few cases, few successes or failures, or a bootstrap interval of zero width."""
    degenerate = bootstrap is not None and (
        any(v is None or not np.isfinite(v) for v in bootstrap) or bootstrap[0] == bootstrap[1]
    )
    return (
        n < MIN_CASES_FOR_BOOTSTRAP
        or min(successes, n - successes) < MIN_SUCCESSES_FOR_BOOTSTRAP
        or degenerate
    )
