"""The API world (tests/api/world.py), started once per session for every API test."""

from __future__ import annotations

import itertools
import os

import pytest

from qi.platform import Platform
from tests.api.world import World, start_world, stop_world
from tests.conftest import make_settings

_n = itertools.count()


@pytest.fixture(scope="session")
def api_world(local_stack, stack_env, tmp_path_factory) -> World:
    prefix = f"api{os.getpid()}-{next(_n)}."
    run_dir = tmp_path_factory.mktemp("api-world")
    world = start_world(Platform(make_settings(local_stack, prefix)), stack_env, run_dir,
                        QI_API_VERIFY_RATE_PER_S="5", QI_API_VERIFY_BURST="1000")
    yield world
    alive = stop_world(world)
    assert all(alive.values()), f"a worker died during the API tests: {alive}"
