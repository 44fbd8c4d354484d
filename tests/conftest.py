"""Shared fixtures and helpers for the environment, scenario and property tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # scripts' tests import from the repo root
    sys.path.insert(0, str(REPO_ROOT))

import envs  # noqa: E402  (registers flywheel/SocialCommerce-v0)

BUILTIN_SCENARIOS: list[str] = envs.builtin_scenarios()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (scripts are run from here, as a user would)."""
    return REPO_ROOT


def random_actions(seed: int, n_steps: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """``n_steps`` reproducible uniform actions in ``[-scale, scale]`` of the given shape."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale, scale, size=(n_steps, *shape)).astype(np.float32)


def flatten_info(info: dict[str, Any]) -> dict[str, np.ndarray]:
    """An ``info`` dict with nested region/lever dicts flattened to ``key/sub`` arrays."""
    flat: dict[str, np.ndarray] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}/{sub}"] = np.asarray(v)
        else:
            flat[key] = np.asarray(value)
    return flat


def assert_infos_equal(a: dict[str, Any], b: dict[str, Any], index: int | None = None) -> None:
    """Two ``info`` dicts hold exactly the same keys and values (``b`` row ``index`` if batched)."""
    fa, fb = flatten_info(a), flatten_info(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        vb = fb[key] if index is None else fb[key][index]
        np.testing.assert_array_equal(fa[key], vb, err_msg=key)
