"""Retrieval quality: precision@k and mean average precision with "relevant" meaning
"same label", and recall@k of an approximate search against exact search."""

from __future__ import annotations

import numpy as np


def precision_at_k(relevant: np.ndarray, k: int) -> float:
    """Mean over queries of the share of the first ``k`` results that are relevant.
    ``relevant``: (Q, >= k) booleans, each row the ranked results of one query."""
    rel = np.asarray(relevant, dtype=bool)
    if rel.shape[1] < k:
        raise ValueError(f"{rel.shape[1]} results per query, precision@{k} needs {k}")
    return float(rel[:, :k].mean())


def average_precision(relevant_ranked: np.ndarray, n_relevant: int) -> float:
    """Average precision of one query: the mean, over the relevant items, of the
    precision at each one's rank; relevant items never retrieved count as 0.
    ``relevant_ranked``: booleans for the whole ranking (or its first part);
    ``n_relevant``: how many relevant items the collection holds."""
    rel = np.asarray(relevant_ranked, dtype=bool)
    if n_relevant <= 0:
        return 0.0
    hits = np.cumsum(rel)
    ranks = np.arange(1, len(rel) + 1)
    return float((hits / ranks)[rel].sum() / n_relevant)


def mean_average_precision(relevant: np.ndarray, n_relevant: np.ndarray) -> float:
    """mAP over queries: rows of ``relevant`` are full rankings (every item of the
    collection, nearest first), ``n_relevant`` the relevant count per query."""
    return float(
        np.mean([average_precision(r, n) for r, n in zip(relevant, n_relevant, strict=True)])
    )


def label_relevance(
    query_labels: np.ndarray, ranked_rows: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """(Q, K) booleans: is the result at each rank of the query's own label."""
    return labels[ranked_rows] == np.asarray(query_labels)[:, None]


def recall_at_k(approximate: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean share of each query's exact ``k`` nearest that the approximate search found
    among its own first ``k`` (rows of result ids, nearest first)."""
    found = [len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approximate, exact, strict=True)]
    return float(np.mean(found))
