"""Hypothesis profiles of the fuzz suite.

``ci``   a few examples per target, derandomised (the same inputs every run), part of the default test run;
``deep`` >= 100,000 generated inputs over all targets, random (run with ``-m slow``; prints the count table).
The profiles are registered here (imported by test_fuzz.py; a conftest.py in this folder would shadow
tests/conftest.py) but not loaded globally, so the rest of the test suite keeps its own settings.
"""

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)

settings.register_profile("ci", max_examples=100, derandomize=True, **_COMMON)
settings.register_profile("deep", max_examples=12000, derandomize=False, **_COMMON)
