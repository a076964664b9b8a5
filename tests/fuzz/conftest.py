"""Fuzzing with Hypothesis: a fixed budget and seed in CI, a long run as a benchmark.

Profiles (``SCANDX_FUZZ_PROFILE``): ``ci`` (default; derandomised, so every CI run tries
the same cases) and ``long`` (``benchmarks/fuzz.py``). ``SCANDX_FUZZ_TALLY=FILE``
records every outcome to FILE (JSON lines) and keeps going after a traceback, so the
benchmark can count them; without it a traceback fails the test as usual.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
settings.register_profile("ci", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("SCANDX_FUZZ_EXAMPLES", "400")),
    derandomize=False,
    **_COMMON,
)
settings.load_profile(os.environ.get("SCANDX_FUZZ_PROFILE", "ci"))
