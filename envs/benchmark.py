"""Environment throughput: how fast the market steps, raw, batched and under ``SyncVectorEnv``.

The logic behind ``scripts/benchmark.py``. Each measurement steps an environment with
pre-drawn random actions in [-1, 1] for a fixed wall-clock time, in :data:`ROUNDS` rounds of
which the fastest is reported (:func:`time_loop`), and counts **env-steps** (one
market advanced one quarter; a vector env of N markets makes N env-steps per call). Episodes
reset as they end (the single env calls ``reset()``; the vector envs autoreset, and their
reset steps count as steps, as in any training loop).

Measured, in one run:

* ``single``: :class:`envs.SocialCommerceEnv` directly (no wrappers, no checker);
* ``vector_1``, ``vector_64``, ``vector_1024``: :class:`envs.SocialCommerceVectorEnv`;
* ``sync_64``: ``gymnasium.vector.SyncVectorEnv`` over 64 raw :class:`envs.SocialCommerceEnv`
  (the fairest baseline: no wrappers on the sub-envs).

and the memory of a 1024-market state (the sum of ``nbytes`` of the :class:`envs.market.State`
arrays; the per-market random generators are not included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np
import gymnasium as gym

from envs.batch import resolve
from envs.market import State
from envs.scenario import Scenario
from envs.social_commerce import SocialCommerceEnv
from envs.vector import SocialCommerceVectorEnv

VECTOR_SIZES: tuple[int, ...] = (1, 64, 1024)
"""Numbers of markets the native vector env is measured at."""
SYNC_SIZE = 64
"""Number of sub-envs of the ``SyncVectorEnv`` baseline."""
MEMORY_SIZE = 1024
"""Number of markets whose state memory is reported."""
N_ACTION_BATCHES = 16
"""Distinct pre-drawn action batches cycled through (drawing actions is not timed)."""


@dataclass(frozen=True)
class Measurement:
    """One timed run: ``calls`` calls of ``step`` advancing ``num_envs`` markets each."""

    name: str
    """Short key (``single``, ``vector_64``, ``sync_64``, ...)."""
    label: str
    """What was measured, for the table."""
    num_envs: int
    """Markets advanced per call."""
    calls: int
    """Calls of ``step`` in the timed window."""
    seconds: float
    """Wall-clock time of the timed window."""

    @property
    def steps_per_s(self) -> float:
        """Env-steps (market-quarters) per second."""
        return self.calls * self.num_envs / self.seconds

    @property
    def us_per_call(self) -> float:
        """Microseconds per call of ``step``."""
        return 1e6 * self.seconds / self.calls


ROUNDS = 5
"""Timed rounds per measurement; the fastest is reported."""


def time_loop(step: Callable[[int], Any], seconds: float, warmup: int = 2, rounds: int = ROUNDS) -> tuple[int, float]:
    """Call ``step(i)`` for about ``seconds`` of wall-clock time, split in ``rounds`` rounds.

    Returns (calls, elapsed seconds) of the fastest round. As ``timeit`` advises, the fastest
    round measures the code; slower ones measure what else the machine was doing (on a shared
    2-core machine that varies by 30% and more from minute to minute). Each round is long
    enough to span many episodes, so resets count in their true proportion.
    """
    for i in range(warmup):
        step(i)
    best: tuple[int, float] | None = None
    i = warmup
    for _ in range(rounds):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds / rounds
        now = start
        while now < deadline:
            # check the clock every few calls only, so timing costs little even for tiny steps
            for _ in range(8):
                step(i)
                i += 1
                calls += 1
            now = time.perf_counter()
        if best is None or calls / (now - start) > best[0] / best[1]:
            best = (calls, now - start)
    assert best is not None
    return best


def _actions(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(N_ACTION_BATCHES, *shape)).astype(np.float32)


def measure_single(scenario: "str | Scenario" = "global", seconds: float = 2.0) -> Measurement:
    """Raw :class:`SocialCommerceEnv` (no wrappers), resetting when an episode ends."""
    env = SocialCommerceEnv(scenario)
    env.reset(seed=0)
    actions = _actions(env.action_space.shape)

    def step(i: int) -> None:
        _, _, terminated, truncated, _ = env.step(actions[i % N_ACTION_BATCHES])
        if terminated or truncated:
            env.reset()

    calls, elapsed = time_loop(step, seconds)
    return Measurement("single", "SocialCommerceEnv (raw, no wrappers)", 1, calls, elapsed)


def measure_vector(num_envs: int, scenario: "str | Scenario" = "global", seconds: float = 2.0) -> Measurement:
    """Native :class:`SocialCommerceVectorEnv` of ``num_envs`` markets (NEXT_STEP autoreset)."""
    env = SocialCommerceVectorEnv(num_envs=num_envs, scenario=scenario)
    env.reset(seed=0)
    actions = _actions(env.action_space.shape)
    calls, elapsed = time_loop(lambda i: env.step(actions[i % N_ACTION_BATCHES]), seconds)
    return Measurement(f"vector_{num_envs}", f"SocialCommerceVectorEnv x {num_envs}", num_envs, calls, elapsed)


def measure_sync(num_envs: int = SYNC_SIZE, scenario: "str | Scenario" = "global", seconds: float = 2.0) -> Measurement:
    """``gymnasium.vector.SyncVectorEnv`` over ``num_envs`` raw :class:`SocialCommerceEnv`."""
    env = gym.vector.SyncVectorEnv([lambda: SocialCommerceEnv(scenario) for _ in range(num_envs)])
    env.reset(seed=0)
    actions = _actions(env.action_space.shape)
    try:
        calls, elapsed = time_loop(lambda i: env.step(actions[i % N_ACTION_BATCHES]), seconds)
    finally:
        env.close()
    return Measurement(f"sync_{num_envs}", f"gymnasium SyncVectorEnv x {num_envs}", num_envs, calls, elapsed)


def state_nbytes(state: State) -> int:
    """Bytes held by the arrays of a batched :class:`State`."""
    return sum(getattr(state, f.name).nbytes for f in fields(state))


def state_memory_mb(num_envs: int = MEMORY_SIZE, scenario: "str | Scenario" = "global") -> float:
    """Memory of the state of a ``num_envs``-market vector env, in MB (10^6 bytes)."""
    env = SocialCommerceVectorEnv(num_envs=num_envs, scenario=scenario)
    env.reset(seed=0)
    return state_nbytes(env.state) / 1e6


def run_benchmark(
    seconds: float = 2.5,
    scenario: "str | Scenario" = "global",
    vector_sizes: tuple[int, ...] = VECTOR_SIZES,
    sync_size: int = SYNC_SIZE,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Measurement], dict[str, float]]:
    """Measure every environment face for ``seconds`` each; return the runs and a summary dict.

    Summary keys: ``single_env_steps_per_s``, ``single_env_us_per_step``,
    ``vector_env_steps_per_s`` (at the largest size, 1024 by default),
    ``vector_env_<N>_steps_per_s`` for each size, ``sync_vector_env_steps_per_s``,
    ``vector_speedup`` (vector at the largest size over sync, per env-step),
    ``vector_state_mb`` (state memory at the largest size), ``seconds_per_measurement``,
    ``vector_num_envs``, ``sync_num_envs``.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    say = progress or (lambda _msg: None)
    scenario, _ = resolve(scenario)  # once: every env below, the sync baseline's 64 included, shares it
    runs: list[Measurement] = []
    say("single env")
    runs.append(measure_single(scenario, seconds))
    for n in vector_sizes:
        say(f"vector env x {n}")
        runs.append(measure_vector(n, scenario, seconds))
    say(f"SyncVectorEnv x {sync_size}")
    runs.append(measure_sync(sync_size, scenario, seconds))

    by_name = {m.name: m for m in runs}
    largest = max(vector_sizes)
    single, vector, sync = by_name["single"], by_name[f"vector_{largest}"], by_name[f"sync_{sync_size}"]
    summary: dict[str, float] = {
        "single_env_steps_per_s": single.steps_per_s,
        "single_env_us_per_step": single.us_per_call,
        "vector_env_steps_per_s": vector.steps_per_s,
        **{f"vector_env_{n}_steps_per_s": by_name[f"vector_{n}"].steps_per_s for n in vector_sizes},
        "sync_vector_env_steps_per_s": sync.steps_per_s,
        "vector_speedup": vector.steps_per_s / sync.steps_per_s,
        "vector_state_mb": state_memory_mb(largest, scenario),
        "vector_num_envs": largest,
        "sync_num_envs": sync_size,
        "seconds_per_measurement": seconds,
        "rounds_per_measurement": ROUNDS,
    }
    return runs, summary


def format_table(runs: list[Measurement], summary: dict[str, float]) -> str:
    """The measurements as an aligned table, followed by the derived figures."""
    header = ("environment", "envs", "env-steps/s", "us/call")
    body = [(m.label, str(m.num_envs), f"{m.steps_per_s:,.0f}", f"{m.us_per_call:,.1f}") for m in runs]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(4)]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])])

    lines = [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body), ""]
    lines.append(f"single env: {summary['single_env_us_per_step']:.1f} us per step")
    lines.append(
        f"vector x {summary['vector_num_envs']:.0f} over SyncVectorEnv x {summary['sync_num_envs']:.0f}, "
        f"per env-step: {summary['vector_speedup']:.1f}x"
    )
    lines.append(f"state of {summary['vector_num_envs']:.0f} markets: {summary['vector_state_mb']:.2f} MB")
    return "\n".join(lines)
