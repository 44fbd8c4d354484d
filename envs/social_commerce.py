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
    value (GMV), and sets its commission. The market answers as a flywheel of media, advertising
    and commerce: creators grow users and their attention, sellers bring buyers (selection),
    buyers bring and keep sellers; past critical mass it turns by itself. Buyers diffuse as a Bass
    process in two cohorts (Gen Z, whose habits are still forming, and older users); orders are
    served by sellers' own fulfilment, third-party logistics and platform warehousing, all
    following the season; demand shocks and regulatory suspensions (Indonesia, October 2023) hit
    at random, and scenarios may script events (suspensions, commission changes, launches). The
    equations are in :mod:`envs.market` and ``docs/model.md``; every parameter is in a scenario
    file under ``configs/scenarios/`` with its source.

    The default scenario ``global`` starts in 2023Q1 from the 2022Q4 exit state of Southeast Asia
    (``sea``), the US (``us``) and the UK (``uk``), fitted to the public record: about $10.1B of
    annualised GMV at the start (``docs/model.md``; ``docs/calibration.md``: $0.6B in 2021, $4.4B
    in 2022), and $4B of budget over 12 quarters ($0.8B a quarter at most). The strategic goal is
    the scenario's ``target_run_rate``: a $45B annual run rate by 2025Q4 for the calibrated
    ``global`` (the record passed the seed's $20B in 2024; ``global_prior`` keeps $20B).

    ## Action Space

    ``Box(-1, 1, (n_regions * 7,), float32)``, region-major: index ``region * 7 + lever``.
    Lever intensity is ``u = (a + 1) / 2`` in [0, 1].

    | lever | index | intensity u means | cost this quarter ($B) |
    |---|---|---|---|
    | `commission_rate` | 0 | commission charged, `u * rate_max` (null action: `reference_rate / rate_max`) | `(reference_rate - rate)^+ * G_3p` (the discount; 0 at or above the reference) |
    | `shipping_subsidy` | 1 | subsidy per order `u * subsidy_max` (1 = free shipping) | `u * subsidy_max * orders_served` |
    | `seller_grants` | 2 | free listings and onboarding grants | `u * pool_max * live` |
    | `warehousing` | 3 | platform fulfilment capex (capacity from next quarter) | `u * pool_max * live` |
    | `creator_incentives` | 4 | livestream and affiliate bonus pool | `u * pool_max * live` |
    | `user_ads` | 5 | the platform's own marketing (geometric adstock) | `u * pool_max * live` |
    | `private_label` | 6 | push of own products; their GMV share `pl_max * c(u)`, concave | 0 (paid in GMV and trust) |

    The null action (no incentives) is every cash lever at 0, no private-label push and the
    commission at each region's reference rate (``envs.market.null_intensity``); the observation
    carries each region's reference rate. Costs are billed on this quarter's served volume:
    ``cost = cash_spend + commission_discount`` (``info``). In ``hard`` budget mode, when the cost
    would exceed ``min(per_quarter, budget_remaining)``, every cash lever and the discount below
    the reference are scaled by one factor (found by a few secant steps: cost is monotone in it)
    so that the cost equals that cap to 1e-9; a rate above the reference and the private label
    are never scaled; the budget is never exceeded. In ``soft`` mode nothing is scaled: the
    episode's cost limit ``budget.total`` is for the agent to respect (constrained RL,
    ``info["cost"]`` is the cost signal).

    NaN or infinite actions raise ``ValueError``; a wrong shape raises ``ValueError``; finite
    values outside [-1, 1] are clipped and counted in ``info["clipped_actions"]``.

    ## Observation Space

    ``Box(-1, 2, (n_regions * 15 + 6,), float32)``. For each region, in order:

    | index | feature | range |
    |---|---|---|
    | 0 | buyers / users (penetration) | [0, 1] |
    | 1 | selection index `Hill(S/S_half; n) / Hill(S_pot/S_half; n)` (S-shaped in sellers) | [0, 1] |
    | 2 | creator strength `C / (C + C_half)` | [0, 1] |
    | 3 | users / user ceiling | [0, 1] |
    | 4 | capacity / last quarter's demand (both de-seasonalised) / 2 | [0, 1] |
    | 5 | livestream affinity / its ceiling | [0, 1] |
    | 6 | seller trust | [0, 1] |
    | 7 | ad reach of the ad stock | [0, 1] |
    | 8 | shopping-start share (a stock; the start value at reset) | [0, 1] |
    | 9 | Gen Z habit stock | [0, 1] |
    | 10 | suspension quarters left / suspension length (visible before the decision) | [0, 1] |
    | 11 | region's annualised run rate / the scenario's target (`target_run_rate`) | [0, 2] |
    | 12 | next quarter's reference commission rate / rate_max | [0, 1] |
    | 13 | attention, the media stock | [0, 1] |
    | 14 | share of capacity the platform runs (warehousing) | [0, 1] |

    then, for the whole platform:

    | index | feature | range |
    |---|---|---|
    | 15R + 0 | quarters left / horizon | [0, 1] |
    | 15R + 1 | budget left / total budget | [0, 1] |
    | 15R + 2 | this quarter's cap / per-quarter cap | [0, 1] |
    | 15R + 3 | next quarter's season multiplier - 1 | [-0.1, 0.2] |
    | 15R + 4 | spent / total budget (above 1 only in soft mode) | [0, 2] |
    | 15R + 5 | calendar quarter of the next quarter: (Q - 1) / 3 | [0, 1] |

    ## Rewards

    ``info["objective_value"] + info["terminal_value"]`` in $B. The scenario's ``objective``
    says what a quarter is worth: ``kind: gmv`` (the quarter's GMV), ``revenue`` or
    ``contribution`` (revenue - cash_spend); ``terminal_value: N`` adds, at the last step, N
    quarters of the business left at the horizon (4 in ``global``): the de-seasonalised value of
    the *exit quarter*, one more quarter from the final state at the null action (no incentives,
    the commission at the reference rate, no shock, the last quarter's parameters). Every random
    suspension is lifted there (a quarter or two long, it would be charged for all N quarters); a
    scripted one stays dark only if it runs past the horizon. Spending in the last quarter counts
    there only through what it leaves (buyers, sellers, stocks), not through its own push.
    ``info["exit_run_rate"]`` is that quarter's annualised, de-seasonalised GMV. With
    ``kind: gmv`` and ``terminal_value: 0`` the reward is the quarter's
    GMV exactly. Cost is not subtracted under ``gmv``: cost limits are the budget (hard mode) or
    a constraint (soft mode).

    ## Starting State

    The scenario's calibrated start (the quarter before ``start``; no randomness in the start).
    At reset, the episode's random numbers (one demand shock and one suspension draw per region
    and quarter) are drawn from the generator seeded by ``reset(seed=...)``; they do not depend on
    actions, so two policies on one seed face the same future (common random numbers).

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
    | `cost` |  | float | $B | incentive spend this quarter, `cash_spend + commission_discount` (what budgets limit) |
    | `cost_by_lever` | lever | float | $B | cost this quarter, summed over regions (the discount under `commission_rate`) |
    | `cost_limit` |  | float | $B | this quarter's cap, `min(per_quarter, budget_remaining)` before spending |
    | `budget_remaining` |  | float | $B | budget left after this quarter |
    | `cost_total` |  | float | $B | cost so far |
    | `cost_limit_exceeded` |  | bool |  | cost so far > `budget.total` (soft mode only) |
    | `cash_spend` |  | float | $B | paid out: shipping, grants, warehousing, creators, ads |
    | `commission_discount` |  | float | $B | commission given up below the reference rates |
    | `revenue` |  | float | $B | commission charged, shop ads and private-label margin |
    | `net_burn` |  | float | $B | `cash_spend - revenue` |
    | `objective_value` |  | float | $B | this quarter's value of the scenario's objective (GMV, revenue or contribution) |
    | `terminal_value` |  | float | $B | value of the business left at the horizon: `terminal_value` quarters of the exit quarter's objective (last step only, else 0) |
    | `exit_run_rate` |  | float | $B a year | annualised, de-seasonalised GMV of the exit quarter: the quarter after the horizon at the null action (last step only, else 0) |
    | `orders` | region | float | M | orders served this quarter |
    | `orders_lost` | region | float | M | orders demanded but not served (capacity) |
    | `shopping_start_share` | region | float | share | share of online shoppers starting here |
    | `buyers` | region | float | M | active buyers |
    | `sellers` | region | float | k | active sellers |
    | `creators` | region | float | k | selling creators |
    | `suspended` | region | bool |  | part of the region was dark this quarter (suspension or not yet launched) |
    | `clipped_actions` |  | int | count | action entries outside [-1, 1], clipped |
    | `quarter` |  | int | quarters | quarters played |
    | `quarter_label` |  | str |  | calendar quarter just played, e.g. `2023Q1` (at reset: the start state's) |

    and ``lever_intensity`` and ``spend_by_region_lever``, arrays ``(n_regions, 7)`` of the
    intensities after projection and of what each lever cost in each region ($B; the commission
    discount in column 0; they sum to ``cost``). The vector env gives the same keys with arrays
    over its markets.

    ## Arguments

    ```python
    import gymnasium as gym, envs
    env = gym.make("flywheel/SocialCommerce-v1", scenario="global",
                   overrides={"budget.mode": "soft", "deterministic": True})
    ```

    * ``scenario``: a built-in name (``global``, ``us``, ``uk``, ``sea``, ``booktok``), a path to
      a YAML file, or an :class:`envs.scenario.Scenario` (used as it is when there are no
      overrides: load it once and hand the object to every env; its ``Params`` are then built
      once, see :func:`envs.batch.resolve`).
    * ``overrides``: ``{"dotted.path": value}`` changes to the scenario, validated like the file
      (``budget.mode``, ``budget.total``, ``deterministic``, ``regions.us.aov``,
      ``objective.kind``, ...); ``{"events": [...]}`` replaces the scenario's scripted events,
      each ``{"quarter": "2023Q4", "region": "sea", "suspend": {"quarters": 1, "share": 0.5}}``
      (or ``reference_rate: 0.06``, ``launch: true``, ``set: {path: "sellers.churn", value: 0.05}``).

    ## Vectorized environment

    ``gym.make_vec("flywheel/SocialCommerce-v1", num_envs=N, vectorization_mode="vector_entry_point")``
    gives :class:`envs.SocialCommerceVectorEnv`, which steps N markets as numpy arrays in one call
    of the same model. ``reset(seed=s)`` seeds market i with ``s + i`` and gives exactly the
    results of N single envs so seeded. :class:`envs.sb3.SB3VecEnv` hands it to
    stable-baselines3.

    ## Version History

    * v1: market model 2: commission as a price (lever 0 ``commission_rate``), accounting on
      this quarter's served volume, capacity from sellers, 3PL and warehousing, a self-sustaining
      flywheel past critical mass, scripted events and calendar quarters, objectives with a
      terminal value, the 2022Q4 exit start state.
    * v0: initial version (TikTok Shop 2023 calibration); its model no longer exists.
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}

    def __init__(
        self,
        scenario: "str | Path | Scenario" = "global",
        overrides: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        ensemble: "str | Path | None" = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self._batch = MarketBatch(scenario, overrides, num_envs=1, ensemble=ensemble)
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
