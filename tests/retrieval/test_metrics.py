"""precision@k, average precision and recall@k against cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from scandx.retrieval.metrics import (
    average_precision,
    label_relevance,
    mean_average_precision,
    precision_at_k,
    recall_at_k,
)


def test_precision_at_k_by_hand():
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], bool)
    assert precision_at_k(rel, 2) == pytest.approx((1 / 2 + 0) / 2)
    assert precision_at_k(rel, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    with pytest.raises(ValueError):
        precision_at_k(rel, 5)


def test_average_precision_by_hand():
    # relevant at ranks 1, 3, 6 of a ranking, 3 relevant in all:
    # (1/1 + 2/3 + 3/6) / 3 = 0.7222...
    ranked = np.array([1, 0, 1, 0, 0, 1], bool)
    assert average_precision(ranked, 3) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    # a relevant item never retrieved counts as zero: 4 relevant, same ranking
    assert average_precision(ranked, 4) == pytest.approx((1 + 2 / 3 + 0.5) / 4)
    assert average_precision(np.zeros(3, bool), 0) == 0.0
    # a perfect ranking scores 1
    assert average_precision(np.array([1, 1, 0, 0], bool), 2) == 1.0


def test_mean_average_precision_and_label_relevance():
    labels = np.array(["a", "b", "a", "b"])
    ranked = np.array([[0, 1, 2, 3], [1, 3, 0, 2]])  # query 0 is "a", query 1 is "b"
    rel = label_relevance(np.array(["a", "b"]), ranked, labels)
    assert rel.tolist() == [[True, False, True, False], [True, True, False, False]]
    # query 0: (1/1 + 2/3) / 2; query 1: (1 + 1) / 2
    assert mean_average_precision(rel, np.array([2, 2])) == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)


def test_recall_at_k_by_hand():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    approx = np.array([[3, 2, 9], [7, 8, 9]])
    assert recall_at_k(approx, exact, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_at_k(exact, exact, 3) == 1.0
