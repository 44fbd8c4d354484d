"""The one lazy seam: where light code reaches torch and stable-baselines3.

``import envs``, the config and run-folder checks and the light commands (bad input, the
planners, the playbooks) must not pay for importing torch (seconds). They reach training and
trained models through :func:`training`, which imports :mod:`agents.ppo` on first call. (The
algorithm registry, :func:`agents.config.get_algorithm`, loads an algorithm's module by name
the same way.)
"""

from __future__ import annotations

from types import ModuleType


def training() -> ModuleType:
    """:mod:`agents.ppo` (``train``, ``set_torch_threads``, ``measure_fps``), imported now."""
    import agents.ppo

    return agents.ppo


def foreign() -> ModuleType:
    """:mod:`agents.foreign` (models trained elsewhere: plain SB3 files, rl-zoo3 folders), imported now."""
    import agents.foreign

    return agents.foreign
