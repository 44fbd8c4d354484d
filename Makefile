# Flywheel: two commands. `make train` sets up .venv and trains PPO on the default scenario;
# `make test` sets up .venv and runs the test suite (.ci/run calls it); `make test-fast` the quick part.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup lock train test test-fast tensorboard benchmark simulate evaluate frontier constraint-benchmark clean

setup: $(STAMP)

# The tested versions are requirements.lock (exact pins of everything installed, made by
# `make lock`); pyproject.toml declares the compatible ranges. torch 2.13.0, the CPU build these
# machines install offline, goes first so that no other package pulls a CUDA build.
TORCH := torch==2.13.0
LOCK := requirements.lock

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[test,zoo]"
	@echo "compiling the market model's kernels (once, ~80 s; cached in envs/__pycache__)"
	$(PY) -c "from envs.batch import MarketBatch; MarketBatch('global')"
	touch $(STAMP)

# Re-pin after changing pyproject.toml's dependencies: install the new ranges, then freeze.
lock:
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test,zoo]"
	{ echo "# The exact versions tested (make lock: pip freeze); pyproject.toml declares the ranges."; \
	  $(PY) -m pip freeze --exclude-editable --local; } > $(LOCK)
	touch $(STAMP)

train: $(STAMP)
	$(PY) scripts/train.py --config configs/train/ppo.yaml
	@echo "Watch training in TensorBoard: make tensorboard, then open http://127.0.0.1:6006"

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs --host 127.0.0.1 --port 6006

# Two worker processes (pytest-xdist): most of the suite's time is subprocesses and trainings
# that leave a core idle (measured on a fresh clone, 2 cores: 252 s against 377 s serially).
test: $(STAMP)
	$(PY) -m pytest -q -n 2

# The edit loop: every test not marked slow (no training, no whole script pipelines).
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

simulate: $(STAMP)
	$(PY) scripts/simulate.py --scenario global --policy merchant_package --seed 0

benchmark: $(STAMP)
	mkdir -p runs && $(PY) scripts/benchmark.py --json

# Evaluate the newest run against the playbooks, best_static and the oracle (100 episodes).
evaluate: $(STAMP)
	$(PY) scripts/evaluate.py $$(ls -td runs/*__*__*__*/ | head -1) --episodes 100

frontier: $(STAMP)
	$(PY) scripts/frontier.py --scenario global --budgets 1 2 4 8   # runs/frontier, or the next free name (runs/frontier-2, ...)

# Hard-budget PPO, unconstrained soft-mode PPO and PPO-Lagrangian, 3 seeds x 300k steps each (~20 min).
constraint-benchmark: $(STAMP)
	nice -n 5 $(PY) scripts/constraint_benchmark.py --timesteps 300000 --out runs/constraint_benchmark

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Fit the default scenario to the public record (configs/history/tiktok_shop.yaml): rewrites
# configs/scenarios/global.yaml (extends global_prior) and configs/ensembles/global.yaml
# (64 posterior draws), then the back-test figures in docs/ (~2-4 min on 2 cores). The fitted
# global sets the problem's goal too: the record passed the seed's $20B in 2024 ($33.2B), so the
# calibrated scenario aims at a $45B run rate by 2025Q4 (ASSUMPTION: a goal ~1.35x the 2024
# record, reachable by a plan under the budget but not without incentives; docs/calibration.md).
.PHONY: calibrate
calibrate: $(STAMP)
	nice -n 5 $(PY) scripts/calibrate.py --history configs/history/tiktok_shop.yaml --out configs/scenarios/global.yaml \
		--set target_run_rate=45 --posterior 64 --ensemble-out configs/ensembles/global.yaml --plot docs/calibration_fit.png --force
	$(PY) scripts/backtest.py --history configs/history/tiktok_shop.yaml --scenario global \
		--json docs/backtest.json --csv docs/backtest.csv --plot docs/backtest.png --force
