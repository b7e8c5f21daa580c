"""Shared test configuration: the hypothesis profiles.

``ci`` (the default) is derandomized, so every run explores the same examples
and a failure in CI reproduces locally; it has no deadline, because one example
of a convergence test replays a whole network schedule. ``dev`` is quicker for
editing loops, ``deep`` digs further before a release. Pick one with
``HYPOTHESIS_PROFILE=dev pytest``.
"""

from __future__ import annotations

import contextlib
import os
import warnings

from hypothesis import HealthCheck, Phase, settings

# On a failure, hypothesis writes a patch with libcst, whose import warns
# (DeprecationWarning from mypy_extensions) and, under ``filterwarnings =
# error``, turns the failure report into an INTERNALERROR. Import it once here,
# quietly, so the report of a real failure stays readable.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
_NO_EXPLAIN = tuple(p for p in Phase if p is not Phase.explain)
"""The explain phase replays a failing schedule thousands of times (minutes here)."""

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=250,
    suppress_health_check=_SLOW_OK,
    phases=_NO_EXPLAIN,
    print_blob=True,
)
settings.register_profile(
    "dev", deadline=None, max_examples=30, suppress_health_check=_SLOW_OK, phases=_NO_EXPLAIN
)
settings.register_profile("deep", deadline=None, max_examples=2000, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# -- PostgreSQL: one throwaway cluster per session, a fresh database per test --

import itertools  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from gether.testing.postgres import PostgresCluster, PostgresNotFoundError  # noqa: E402

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of our own. No server binaries is a failure, never a
    skip: install them (``apt-get install postgresql``; ``.ci/run`` does)."""
    try:
        cluster = PostgresCluster()
    except PostgresNotFoundError as exc:
        pytest.fail(f"{exc} (apt-get install postgresql)")
    with cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards (the server is
    restarted if a test left it down)."""
    name = f"gether_test_{next(_database_numbers)}"
    postgres_cluster.start()
    yield postgres_cluster.create_database(name)
    postgres_cluster.start()
    postgres_cluster.drop_database(name)
