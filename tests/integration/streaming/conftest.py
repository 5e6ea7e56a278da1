"""Every streaming test's drivers are killed at its end, whatever the test did with them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.streaming.helpers import Driver


@pytest.fixture(autouse=True)
def _no_driver_outlives_its_test() -> Iterator[None]:
    yield
    for driver in Driver.started:
        driver.kill_all()
    Driver.started.clear()
