"""Fitting a history's free parameters, and sampling their posterior.

Error model (stated, and used by both the fit and the posterior): every observation is the true
figure times a log-normal error, ``log(observed) = log(simulated) + e``, ``e ~ N(0, SIGMA^2)``
independently, with ``SIGMA = 0.15`` (published estimates of the same figure disagree by about
15%). The fit minimises ``sum(((log sim - log obs) / SIGMA)^2)`` over the free parameters within
their bounds (:func:`fit`: ``scipy.optimize.least_squares``, trust-region reflective, the
Jacobian by forward differences); the posterior (:func:`sample_posterior`) is that likelihood
times a uniform prior on the bounds, sampled with ``emcee``'s affine-invariant ensemble sampler.
Every evaluation of a population (the Jacobian's ``d + 1`` points, the sampler's walkers) is one
batch of the model (:func:`agents.calibration.replay.replay`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import emcee
import numpy as np
from scipy.optimize import least_squares

from agents.calibration.replay import replay, simulated
from envs.history import History

SIGMA = 0.15
#: Forward-difference step of the Jacobian, as a share of each parameter's range.
JAC_STEP = 1e-4
#: Floor of a simulated value before its log (a region with no GMV yet).
FLOOR = 1e-9


def candidate_overrides(history: History, x: np.ndarray) -> list[dict[str, float]]:
    """Rows of parameter values ``(m, d)`` as dotted-path overrides, in ``history.free`` order."""
    paths = list(history.free)
    return [dict(zip(paths, map(float, row))) for row in np.atleast_2d(x)]


def log_residuals(history: History, x: np.ndarray) -> np.ndarray:
    """``(log sim - log obs) / SIGMA`` for every candidate row of ``x`` ``(m, d)``: ``(m, K)``,
    all candidates in one deterministic batch."""
    rep = replay(history, candidate_overrides(history, x))
    sim = simulated(rep, history.observations, history.quarters)
    observed = np.array([ob.value for ob in history.observations])
    return (np.log(np.maximum(sim, FLOOR)) - np.log(observed)) / SIGMA


@dataclass
class Fit:
    paths: list[str]
    bounds: np.ndarray  # (d, 2)
    start: np.ndarray
    value: np.ndarray
    cost: float  # 0.5 * sum of squared scaled residuals
    residuals: np.ndarray  # scaled, at the optimum
    evaluations: int
    seconds: float
    message: str
    starts: list[dict] = field(default_factory=list)

    def overrides(self) -> dict[str, float]:
        return dict(zip(self.paths, map(float, self.value)))


def scenario_values(history: History) -> np.ndarray:
    """The free parameters' values in the history's scenario (the fit's first start)."""
    out = []
    for path in history.free:
        node = history.document
        for key in path.split("."):
            node = node[key]
        out.append(float(node))
    return np.array(out)


def fit(history: History, starts: int = 3, seed: int = 0, start: np.ndarray | None = None) -> Fit:
    """Bounded least squares of the log errors from the scenario's values (clipped into the
    bounds) and ``starts - 1`` random points of the box; the best optimum wins."""
    if not history.free:
        raise ValueError(f"{history.path}: free is empty: name the parameters to fit, dotted.path: [low, high]")
    paths = list(history.free)
    bounds = np.array([history.free[p] for p in paths], dtype=np.float64)
    lo, width = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    counter = {"n": 0}

    def to_x(z):
        return lo + np.clip(z, 0.0, 1.0) * width

    def fun(z):
        counter["n"] += 1
        return log_residuals(history, to_x(z)[None])[0]

    def jac(z):
        d = len(z)
        step = np.full(d, JAC_STEP)
        step[z + step > 1.0] *= -1.0  # stay inside the box
        zs = np.vstack([z, z + np.diag(step)])
        counter["n"] += d + 1
        r = log_residuals(history, to_x(zs))
        return ((r[1:] - r[0]) / step[:, None]).T

    first = scenario_values(history) if start is None else np.asarray(start, dtype=np.float64)
    rng = np.random.default_rng(seed)
    z_starts = [np.clip((first - lo) / width, 0.02, 0.98)] + [rng.uniform(0.05, 0.95, len(paths)) for _ in range(starts - 1)]
    t0 = time.perf_counter()
    best, tried = None, []
    for z0 in z_starts:
        res = least_squares(fun, z0, jac=jac, bounds=(0.0, 1.0), method="trf", x_scale=1.0, max_nfev=200)
        tried.append({"start": to_x(z0).tolist(), "value": to_x(res.x).tolist(), "cost": float(res.cost)})
        if best is None or res.cost < best.cost:
            best = res
    return Fit(paths=paths, bounds=bounds, start=first, value=to_x(best.x), cost=float(best.cost), residuals=best.fun,
               evaluations=counter["n"], seconds=time.perf_counter() - t0, message=str(best.message), starts=tried)


@dataclass
class Posterior:
    paths: list[str]
    samples: np.ndarray  # (N, d) draws
    chain_shape: tuple[int, int, int]  # steps, walkers, d
    acceptance: float
    seconds: float
    walkers: int
    steps: int
    burn: int
    autocorrelation: list[float]  # emcee's integrated autocorrelation time per parameter, in steps

    @property
    def converged(self) -> bool:
        """emcee's rule of thumb: the kept chain is at least 50 autocorrelation times long."""
        return bool(np.all(np.isfinite(self.autocorrelation)) and (self.steps - self.burn) >= 50 * max(self.autocorrelation))

    def percentiles(self, q=(10, 50, 90)) -> np.ndarray:
        return np.percentile(self.samples, q, axis=0)


def log_posterior(history: History, x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Log posterior (up to a constant) of every row of ``x`` ``(m, d)``: uniform prior on the
    bounds, the log-normal likelihood of :data:`SIGMA`; ``-inf`` outside the bounds."""
    x = np.atleast_2d(x)
    inside = np.all((x >= bounds[:, 0]) & (x <= bounds[:, 1]), axis=1)
    out = np.full(len(x), -np.inf)
    if inside.any():
        r = log_residuals(history, x[inside])
        out[inside] = -0.5 * np.sum(r * r, axis=1)
    return out


def sample_posterior(history: History, best: Fit, n: int, walkers: int | None = None, steps: int = 2000,
                     burn: int = 400, seed: int = 0) -> Posterior:
    """``n`` parameter sets drawn from the posterior: ``emcee`` with ``walkers`` walkers (one batch
    per step) started in a small ball around the fit, ``burn`` steps dropped, the rest thinned to
    ``n`` draws."""
    d = len(best.paths)
    walkers = walkers or max(32, 4 * d)
    rng = np.random.default_rng(seed)
    width = best.bounds[:, 1] - best.bounds[:, 0]
    p0 = np.clip(best.value + 0.01 * width * rng.standard_normal((walkers, d)),
                 best.bounds[:, 0] + 1e-9 * width, best.bounds[:, 1] - 1e-9 * width)
    sampler = emcee.EnsembleSampler(walkers, d, lambda x: log_posterior(history, x, best.bounds), vectorize=True)
    sampler.random_state = np.random.RandomState(seed).get_state()  # emcee's own generator: the same seed, the same chain
    t0 = time.perf_counter()
    sampler.run_mcmc(p0, steps, progress=False)
    seconds = time.perf_counter() - t0
    flat = sampler.get_chain(discard=burn, flat=True)
    quiet = logging.getLogger("emcee")  # its warning about short chains: Posterior.converged says it once
    level, quiet.level = quiet.level, logging.ERROR
    try:
        tau = [float(t) for t in emcee.autocorr.integrated_time(sampler.get_chain(discard=burn), quiet=True)]
    finally:
        quiet.setLevel(level)
    pick = rng.choice(len(flat), size=n, replace=len(flat) < n)
    return Posterior(paths=best.paths, samples=flat[pick], chain_shape=sampler.get_chain().shape,
                     acceptance=float(np.mean(sampler.acceptance_fraction)), seconds=seconds,
                     walkers=walkers, steps=steps, burn=burn, autocorrelation=tau)
