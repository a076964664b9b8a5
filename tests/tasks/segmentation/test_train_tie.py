"""Segmentation's tie tolerance for the engine's best-epoch rule (``core/engine.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scandx.core.training_task import TIE_STANDARD_ERRORS
from scandx.tasks.segmentation.train import tie_tolerance


def test_the_tolerance_is_half_a_standard_error_of_the_mean_dice_over_cases():
    scores = [0.80, 0.84, 0.78, 0.82]  # hand-worked: sd 0.025820, SE 0.012910
    assert tie_tolerance(scores) == pytest.approx(TIE_STANDARD_ERRORS * 0.0129099, rel=1e-4)
    assert tie_tolerance(scores) == pytest.approx(
        TIE_STANDARD_ERRORS * np.std(scores, ddof=1) / math.sqrt(4)
    )


def test_one_case_or_identical_cases_give_no_tolerance():
    assert tie_tolerance([0.9]) == 0.0
    assert tie_tolerance([]) == 0.0
    assert tie_tolerance([0.7, 0.7, 0.7]) == pytest.approx(0.0, abs=1e-12)
