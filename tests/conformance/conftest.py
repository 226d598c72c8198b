"""Fixtures of the backend-conformance suite: each test runs once per installed backend."""

from __future__ import annotations

import numpy as np
import pytest

from conformance_backends import PhysicsAdapter, backend_params, physics_adapter


@pytest.fixture(scope='session', params=backend_params())
def physics_backend(request: pytest.FixtureRequest) -> PhysicsAdapter:
    return physics_adapter(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
