"""The `driver` fixture: every scenario runs once per provider in DRIVERS."""

from __future__ import annotations

import aiohttp
import pytest

from bot.app import Parts
from sandbox.botuser import BotUser
from tests.scenarios.drivers import DRIVERS, Driver


@pytest.fixture(params=DRIVERS, ids=lambda d: d.name)
def driver_class(request: pytest.FixtureRequest) -> type[Driver]:
    return request.param


@pytest.fixture
def bare_driver(
    request: pytest.FixtureRequest,
    driver_class: type[Driver],
    user: BotUser,
    http: aiohttp.ClientSession,
) -> Driver:
    """A driver not attached to a bot yet (for scenarios that start their own BotApp)."""
    return driver_class(request.getfixturevalue(driver_class.name), user, http)


@pytest.fixture
def driver(bare_driver: Driver, app: Parts) -> Driver:
    bare_driver.app = app
    return bare_driver
