"""Policy fixtures: the real bundle from ``policies/`` and its compiled table, built once."""

from __future__ import annotations

import pytest
from policy_support import Scenario
from policy_support import load_scenarios

from authz.policy.engine import Policy
from authz.policy.engine import default_directory
from authz.policy.engine import load_bundle


@pytest.fixture(scope="session")
def bundle() -> dict[str, str]:
    return load_bundle(default_directory())


@pytest.fixture(scope="session")
def policy(bundle: dict[str, str]) -> Policy:
    """The compiled policy (about two seconds), shared by every policy test module."""
    return Policy(bundle)


@pytest.fixture(scope="session")
def scenarios() -> list[Scenario]:
    return load_scenarios()
