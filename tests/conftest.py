"""Shared test configuration: the hypothesis profiles.

``ci`` (the default) is derandomized, so every run explores the same examples
and a failure in CI reproduces locally; it has no deadline, because one example
of a convergence test replays a whole network schedule. ``dev`` is quicker for
editing loops, ``deep`` digs further before a release. Pick one with
``HYPOTHESIS_PROFILE=dev pytest``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=200,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=30, suppress_health_check=_SLOW_OK)
settings.register_profile("deep", deadline=None, max_examples=2000, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
