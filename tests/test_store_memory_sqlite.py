"""The memory and SQLite stores pass the conformance suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from gether.testing.store_conformance import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store_url(self, request: pytest.FixtureRequest) -> str:
        return f"memory://{request.node.nodeid}"


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/events.db"
