"""``SocialCommerceEnv``: the Gymnasium face of one market (a batch of one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import gymnasium as gym
from gymnasium.error import ResetNeeded

from envs import market
from envs.batch import MarketBatch
from envs.render import Dashboard, EpisodeTrace, Window, ansi_line
from envs.scenario import Scenario


class SocialCommerceEnv(gym.Env):
    """
    ## Description

    A social-commerce platform (TikTok Shop in 2023 is the reference case) spends a limited
    incentive budget, quarter by quarter, across regions and levers to grow gross merchandise
    value (GMV). The market answers as a two-sided flywheel: sellers bring buyers (selection),
    buyers bring sellers, creators bring attention and users. Buyers diffuse as a Bass process
    in two cohorts (Gen Z, whose habits are still forming, and older users); orders are limited
    by fulfilment capacity; demand shocks and regulatory suspensions (Indonesia, October 2023)
    hit at random. The equations and their sources are in :mod:`envs.market`; every parameter is
    in a scenario file under ``configs/scenarios/`` with its source.

    The default scenario ``global`` starts in 2023Q1 with Southeast Asia (``sea``), the US
    (``us``) and the UK (``uk``), $3.8B of annualised GMV (the starting table of
    ``docs/calibration.md``: buyers x orders x AOV; that file quotes ~$4.7B for the same table), and
    $4B of budget over 12 quarters ($0.8B a quarter at most). The strategic goal is a $20B
    annual run rate.

    ## Action Space

    ``Box(-1, 1, (n_regions * 7,), float32)``, region-major: index ``region * 7 + lever``.
    Lever intensity is ``u = (a + 1) / 2`` in [0, 1].

    | lever | index | intensity u means | cost this quarter ($B) |
    |---|---|---|---|
    | `commission_waiver` | 0 | share of the standard commission waived (1 = zero commission) | `u * commission * G_last * season` |
    | `shipping_subsidy` | 1 | subsidy per order `u * subsidy_max` (1 = free shipping) | `u * subsidy_max * orders_last * season` |
    | `seller_grants` | 2 | free listings and onboarding grants | `u * pool_max` |
    | `warehousing` | 3 | fulfilment capex (capacity from next quarter) | `u * pool_max` |
    | `creator_incentives` | 4 | livestream and affiliate bonus pool | `u * pool_max` |
    | `user_ads` | 5 | the platform's own marketing (geometric adstock) | `u * pool_max` |
    | `private_label` | 6 | share `u * private_label_max` of traffic steered to own products | 0 (paid in GMV and trust) |

    Costs are known before the quarter. In ``hard`` budget mode, when the cost exceeds
    ``min(per_quarter, budget_remaining)`` every spend lever is scaled by the same factor so
    that the cost equals that cap exactly; the budget is never exceeded. In ``soft`` mode
    nothing is scaled: the episode's cost limit ``budget.total`` is for the agent to respect
    (constrained RL, ``info["cost"]`` is the cost signal).

    NaN or infinite actions raise ``ValueError``; a wrong shape raises ``ValueError``; finite
    values outside [-1, 1] are clipped and counted in ``info["clipped_actions"]``.

    ## Observation Space

    ``Box(-1, 2, (n_regions * 12 + 5,), float32)``. For each region, in order:

    | index | feature | range |
    |---|---|---|
    | 0 | buyers / users (penetration) | [0, 1] |
    | 1 | selection index `Hill(S/S_half; n) / Hill(S_pot/S_half; n)` (S-shaped in sellers) | [0, 1] |
    | 2 | creator strength `C / (C + C_half)` | [0, 1] |
    | 3 | users / user ceiling | [0, 1] |
    | 4 | capacity cover `K / (orders * season) / 2` | [0, 1] |
    | 5 | livestream affinity / its ceiling | [0, 1] |
    | 6 | seller trust | [0, 1] |
    | 7 | ad reach of the ad stock | [0, 1] |
    | 8 | last quarter's shopping-start share (the start value at reset) | [0, 1] |
    | 9 | Gen Z habit stock | [0, 1] |
    | 10 | suspension quarters left / suspension length (visible before the decision) | [0, 1] |
    | 11 | region's annualised run rate / the scenario's target ($20B) | [0, 2] |

    then, for the whole platform:

    | index | feature | range |
    |---|---|---|
    | 12R + 0 | quarters left / horizon | [0, 1] |
    | 12R + 1 | budget left / total budget | [0, 1] |
    | 12R + 2 | this quarter's cap / per-quarter cap | [0, 1] |
    | 12R + 3 | next quarter's season multiplier - 1 | [-0.1, 0.2] |
    | 12R + 4 | spent / total budget (above 1 only in soft mode) | [0, 2] |

    ## Rewards

    The quarter's GMV in $B (third-party plus private label). Cost is not subtracted: cost
    limits are the budget (hard mode) or a constraint (soft mode). ``info["revenue"]`` beside
    ``info["cost"]`` gives the platform's net burn.

    ## Starting State

    The calibrated 2023Q1 market of the scenario (no randomness in the start). At reset, the
    episode's random numbers (one demand shock and one suspension draw per region and quarter)
    are drawn from the generator seeded by ``reset(seed=...)``; they do not depend on actions,
    so two policies on one seed face the same future (common random numbers).

    ## Episode End

    The episode **terminates** after ``horizon`` quarters (12 by default): the horizon is part
    of the problem and time left is observed, so it is a true terminal state. There is no
    truncation; running out of budget does not end the episode. Stepping an ended episode raises
    ``gymnasium.error.ResetNeeded`` (call ``reset()``); the vector env resets by itself instead
    (gymnasium's next-step autoreset).

    ## Info

    Every step (and reset) returns these keys (a per-region or per-lever key maps each region or
    lever name to a value):

    | key | per | type | unit | meaning |
    |---|---|---|---|---|
    | `gmv` |  | float | $B | GMV this quarter (third party plus private label) |
    | `gmv_run_rate` |  | float | $B a year | annualised GMV, de-seasonalised |
    | `gmv_by_region` | region | float | $B | GMV this quarter |
    | `cost` |  | float | $B | spent this quarter, after any projection |
    | `cost_by_lever` | lever | float | $B | spent this quarter, summed over regions |
    | `cost_limit` |  | float | $B | this quarter's cap, `min(per_quarter, budget_remaining)` before spending |
    | `budget_remaining` |  | float | $B | budget left after this quarter |
    | `cost_total` |  | float | $B | spent so far |
    | `cost_limit_exceeded` |  | bool |  | spent > `budget.total` (soft mode only) |
    | `shopping_start_share` | region | float | share | share of online shoppers starting here |
    | `buyers` | region | float | M | active buyers |
    | `sellers` | region | float | k | active sellers |
    | `creators` | region | float | k | selling creators |
    | `suspended` | region | bool |  | region suspended next quarter |
    | `revenue` |  | float | $B | commission, shop ads and private-label margin this quarter |
    | `clipped_actions` |  | int | count | action entries outside [-1, 1], clipped |
    | `quarter` |  | int | quarters | quarters played |

    and ``lever_intensity``, an array ``(n_regions, 7)`` of the intensities after projection.
    The vector env gives the same keys with arrays over its markets.

    ## Arguments

    ```python
    import gymnasium as gym, envs
    env = gym.make("flywheel/SocialCommerce-v0", scenario="global",
                   overrides={"budget.mode": "soft", "deterministic": True})
    ```

    * ``scenario``: a built-in name (``global``, ``us``, ``uk``, ``sea``, ``booktok``), a path to
      a YAML file, or an :class:`envs.scenario.Scenario` (used as it is when there are no
      overrides: load it once and hand the object to every env; its ``Params`` are then built
      once, see :func:`envs.batch.resolve`).
    * ``overrides``: ``{"dotted.path": value}`` changes to the scenario, validated like the file
      (``budget.mode``, ``budget.total``, ``deterministic``, ``regions.us.aov``, ...).

    ## Vectorized environment

    ``gym.make_vec("flywheel/SocialCommerce-v0", num_envs=N, vectorization_mode="vector_entry_point")``
    gives :class:`envs.SocialCommerceVectorEnv`, which steps N markets as numpy arrays in one call
    of the same model. ``reset(seed=s)`` seeds market i with ``s + i`` and gives exactly the
    results of N single envs so seeded. :class:`envs.sb3.SB3VecEnv` hands it to
    stable-baselines3.

    ## Version History

    * v0: initial version (TikTok Shop 2023 calibration).
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}

    def __init__(
        self,
        scenario: "str | Path | Scenario" = "global",
        overrides: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self._batch = MarketBatch(scenario, overrides, num_envs=1)
        self.scenario = self._batch.scenario
        self.params = self._batch.params
        self.action_space = self._batch.single_action_space
        self.observation_space = self._batch.single_observation_space
        self._last_info: dict | None = None
        self._ended = False
        # the dashboard (envs.render) is made on the first frame, only for the modes that draw it
        self._trace = EpisodeTrace(self.params.region_names) if render_mode in ("rgb_array", "human") else None
        self._dashboard: Dashboard | None = None
        self._window: Window | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._batch.rngs is None or self._batch.rngs[0] is not self.np_random:
            self._batch.use_generators([self.np_random])
        obs, info = self._batch.reset()
        self._ended = False
        self._last_info = self._batch.info_row(info, 0)
        if self._trace is not None:
            self._trace.record(self._last_info, start=True)
            if self.render_mode == "human":
                self.render()
        return obs[0], self._last_info

    def step(self, action):
        if self._ended:
            raise ResetNeeded(f"the episode ended after {self.params.horizon} quarters; call reset() before step()")
        a = np.asarray(action)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}; expected {self.action_space.shape} (regions x levers, region-major)")
        obs, reward, terminated, info = self._batch.step(a[None])
        self._ended = bool(terminated[0])
        self._last_info = self._batch.info_row(info, 0)
        if self._trace is not None:
            self._trace.record(self._last_info)
            if self.render_mode == "human":
                self.render()
        return obs[0], float(reward[0]), self._ended, False, self._last_info

    @property
    def state(self) -> market.State:
        """The batched model state (a batch of one)."""
        return self._batch.state

    def render(self):
        """The render mode's view of the market (gymnasium's render API).

        * ``ansi``: one line of text for the last quarter;
        * ``rgb_array``: the dashboard (:mod:`envs.render`: GMV by region against the target run
          rate, spend by lever, budget left) as an ``(H, W, 3)`` uint8 array;
        * ``human``: the dashboard in a window, drawn at every reset and step (``render()``
          returns ``None``); where no display exists nothing is shown and nothing fails;
        * ``None``: nothing.

        Before the first ``reset()`` there is nothing to draw: ``None``.
        """
        if self.render_mode is None or self._last_info is None:
            return None
        if self.render_mode == "ansi":
            return ansi_line(self._last_info)
        if self._dashboard is None:
            self._dashboard = Dashboard(self.params, title=self.scenario.name)
        frame = self._dashboard.frame(self._trace)
        if self.render_mode == "rgb_array":
            return frame
        if self._window is None:
            self._window = Window(f"Flywheel: {self.scenario.name}")
        self._window.show(frame)
        return None

    def close(self):
        if self._window is not None:
            self._window.close()
            self._window = None
        super().close()
