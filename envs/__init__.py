"""Flywheel environments: the calibrated social-commerce market and its Gymnasium faces.

Importing this package registers ``flywheel/SocialCommerce-v1`` (with a native
``vector_entry_point``), the environment of market model version :data:`MODEL_VERSION`. The v0
environment's model no longer exists, so ``-v0`` is not registered.
"""

from gymnasium.envs.registration import register, registry

from envs.market import LEVERS, MODEL_VERSION
from envs.scenario import Scenario, ScenarioError, builtin_scenarios, load_scenario
from envs.social_commerce import SocialCommerceEnv
from envs.vector import SocialCommerceVectorEnv

ENV_ID = "flywheel/SocialCommerce-v1"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="envs.social_commerce:SocialCommerceEnv",
        vector_entry_point="envs.vector:SocialCommerceVectorEnv",
    )



def __getattr__(name: str):
    # The SB3 adapter imports stable-baselines3 (and torch): load it only when asked for.
    if name == "SB3VecEnv":
        from envs.sb3 import SB3VecEnv

        return SB3VecEnv
    raise AttributeError(f"module 'envs' has no attribute {name!r}")


__all__ = [
    "ENV_ID",
    "LEVERS",
    "MODEL_VERSION",
    "SB3VecEnv",
    "Scenario",
    "ScenarioError",
    "SocialCommerceEnv",
    "SocialCommerceVectorEnv",
    "builtin_scenarios",
    "load_scenario",
]
