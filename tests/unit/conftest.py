"""Fixtures for the connectors' unit tests."""
from __future__ import annotations

import pytest
import responses


@pytest.fixture
def mocked():
    """The provider's HTTP API, faked with `responses` (an unused registration fails the test)."""
    with responses.RequestsMock() as rsps:
        yield rsps


def assert_timeouts(mocked, expected: tuple[float, float]) -> None:
    """Every call was made, and made with the connector's (connect, read) timeout."""
    assert mocked.calls, "no call made"
    for call in mocked.calls:
        assert call.request.req_kwargs["timeout"] == expected
