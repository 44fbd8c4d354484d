"""The native vector env keeps Gymnasium 1.x's vector contract and gives exactly SyncVectorEnv's
results on the same seeds: resets (full, masked, seeded per market), the three autoreset modes
(with final observations and infos), ``_key`` masks, truncation by ``max_episode_steps``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode

import envs

N = 3


def make_pair(mode: AutoresetMode, **kwargs):
    native = gym.make_vec(envs.ENV_ID, num_envs=N, vectorization_mode="vector_entry_point", autoreset_mode=mode, scenario="global", **kwargs)
    sync = gym.make_vec(envs.ENV_ID, num_envs=N, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}, scenario="global", **kwargs)
    return native, sync


def assert_same(a, b, where="info"):
    """Equal results, exactly: same keys, dtypes, shapes and values (object arrays element-wise)."""
    if isinstance(b, tuple):
        assert isinstance(a, tuple) and len(a) == len(b), f"{where}: {type(a)} vs a tuple of {len(b)}"
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{k}]")
        return
    if isinstance(b, dict):
        assert isinstance(a, dict), f"{where}: {type(a)} vs dict"
        assert set(a) == set(b), f"{where}: keys differ: native only {sorted(set(a) - set(b))}, sync only {sorted(set(b) - set(a))}"
        for k in b:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{where}: shape {a.shape} vs {b.shape}"
    if b.dtype == object:
        assert a.dtype == object, f"{where}: dtype {a.dtype} vs object"
        for i, (x, y) in enumerate(zip(a, b)):
            assert (x is None) == (y is None), f"{where}[{i}]: {x!r} vs {y!r}"
            if y is not None:
                assert_same(x, y, f"{where}[{i}]")
        return
    assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} vs {b.dtype}"
    assert np.array_equal(a, b), f"{where}: {a} vs {b}"


def assert_step_same(native_out, sync_out, t):
    names = ("obs", "reward", "terminated", "truncated", "info")
    for name, x, y in zip(names, native_out, sync_out):
        assert_same(x, y, f"step {t} {name}")


@pytest.mark.parametrize("mode", list(AutoresetMode), ids=lambda m: m.value)
def test_same_as_sync_over_resets_masks_and_episode_ends(mode):
    native, sync = make_pair(mode)
    assert native.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == mode
    assert native.single_observation_space == sync.single_observation_space
    assert native.single_action_space == sync.single_action_space
    assert_same(native.reset(seed=7), sync.reset(seed=7), "reset")
    rng = np.random.default_rng(0)
    horizon = native.unwrapped.params.horizon
    finals = 0
    for t in range(2 * horizon + 6):
        # actions beyond [-1, 1] too: clipping and its count must agree
        a = rng.uniform(-1.3, 1.3, native.action_space.shape).astype(np.float32)
        out_n, out_s = native.step(a), sync.step(a)
        assert_step_same(out_n, out_s, t)
        out_n[0][...] = np.nan  # the caller owns what a step returns: scribbling on it changes nothing later
        finals += int("final_obs" in out_s[4])
        if t == 3:  # desynchronise the markets: 0 and 2 start again, 1 goes on
            mask = np.array([True, False, True])
            masked = native.reset(options={"reset_mask": mask})
            assert_same(masked, sync.reset(options={"reset_mask": mask}), "masked reset")
            masked[0][...] = np.nan
        if mode is AutoresetMode.DISABLED:
            ended = out_s[2] | out_s[3]
            if ended.any():
                assert_same(native.reset(options={"reset_mask": ended}), sync.reset(options={"reset_mask": ended}), f"reset after step {t}")
    if mode is AutoresetMode.SAME_STEP:
        assert finals >= 2, "the run must cover final observations of both desynchronised groups"


def test_seed_lists_keep_unseeded_generators_and_max_episode_steps_truncates():
    native, sync = make_pair(AutoresetMode.NEXT_STEP, max_episode_steps=5)
    assert_same(native.reset(seed=[11, 12, 13]), sync.reset(seed=[11, 12, 13]), "reset")
    a = np.zeros(native.action_space.shape, np.float32)
    truncated = False
    for t in range(14):
        out_n, out_s = native.step(a), sync.step(a)
        assert_step_same(out_n, out_s, t)
        truncated |= bool(out_s[3].any())
        if t == 6:  # market 1 keeps its generator going, 0 and 2 are seeded again
            assert_same(native.reset(seed=[3, None, 4]), sync.reset(seed=[3, None, 4]), "reseed")
    assert truncated


def test_disabled_autoreset_refuses_to_step_an_ended_market():
    native = gym.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", autoreset_mode=AutoresetMode.DISABLED)
    native.reset(seed=0)
    a = np.zeros(native.action_space.shape, np.float32)
    for _ in range(native.unwrapped.params.horizon):
        terminated = native.step(a)[2]
    assert terminated.all()
    with pytest.raises(ResetNeeded):
        native.step(a)
    native.reset(options={"reset_mask": np.array([True, True])})
    native.step(a)


def test_reset_mask_is_checked_like_sync():
    native, sync = make_pair(AutoresetMode.NEXT_STEP)
    native.reset(seed=0), sync.reset(seed=0)
    for bad, error in [([True, False, True], TypeError), (np.array([True, False]), ValueError),
                       (np.array([1, 0, 1]), TypeError), (np.zeros(N, dtype=bool), ValueError)]:
        for env in (native, sync):
            with pytest.raises(error):
                env.reset(options={"reset_mask": bad})


def test_render_modes_and_arguments():
    v = gym.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", render_mode="rgb_array")
    assert v.render_mode == "rgb_array"
    v.reset(seed=0)
    v.step(np.zeros(v.action_space.shape, np.float32))
    frames = v.render()
    assert len(frames) == 2 and all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
    assert not np.array_equal(frames[0], np.zeros_like(frames[0]))
    text = gym.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", render_mode="ansi")
    text.reset(seed=0)
    assert all(line.startswith("Q0: GMV") for line in text.render())
    with pytest.raises(ValueError, match="render_mode"):
        gym.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", render_mode="video")
    with pytest.raises(ValueError, match="autoreset_mode"):
        gym.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", autoreset_mode="sometimes")
    assert gym.spec(envs.ENV_ID).max_episode_steps is None  # the horizon is a termination


@pytest.mark.parametrize("threads", ["1", "3"])
def test_threads_change_no_number(monkeypatch, threads):
    """Batches of PARALLEL_MIN_MARKETS or more are split over FLYWHEEL_ENV_THREADS threads: the
    observations, rewards and info of a whole episode (with its reset) are bit-identical to one
    thread's, including an uneven split (3 threads over 130 markets) and the last step's terminal
    value (its exit quarters run in a kernel of their own, split the same way)."""
    from envs import market

    n = market.PARALLEL_MIN_MARKETS + 2
    actions = np.random.default_rng(5).uniform(-1.2, 1.2, size=(13, n, 21)).astype(np.float32)

    def episode(env_threads: str):
        monkeypatch.setenv("FLYWHEEL_ENV_THREADS", env_threads)
        env = envs.SocialCommerceVectorEnv(num_envs=n, scenario="global")
        obs, _ = env.reset(seed=11)
        out = [obs]
        for a in actions:
            obs, reward, _, _, info = env.step(a)
            out += [obs, reward, info["cost"], info["revenue"], info["spend_by_region_lever"], info["orders"]["us"],
                    info["terminal_value"], info["exit_run_rate"]]
        return out

    for a, b in zip(episode("1"), episode(threads)):
        np.testing.assert_array_equal(a, b)


def test_threaded_step_in_a_forked_child():
    """A forked child (the oracle's workers) steps a threaded batch with its own helper threads
    (the parent's do not survive fork), getting the parent's numbers."""
    import multiprocessing

    n = 256
    env = envs.SocialCommerceVectorEnv(num_envs=n, scenario="global")
    env.reset(seed=3)
    action = np.zeros((n, 21), dtype=np.float32)
    expected = env.step(action)[1]  # the parent's pool exists now
    env.reset(seed=3)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_step_once, (env, action)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)


def _step_once(env, action):
    return env.step(action)[1]
