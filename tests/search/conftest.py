"""Fixtures the search tests share: a real PostgreSQL server of their own (one per test module)."""
from __future__ import annotations

import pytest

from servers import pg_binaries, postgres_server


@pytest.fixture(scope="module")
def pg():
    if pg_binaries() is None:
        pytest.skip("PostgreSQL's binaries (Debian's postgresql package) are not installed")
    with postgres_server() as server:
        yield server
