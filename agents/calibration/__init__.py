"""Calibration: replaying a history through the model, fitting it, and what the fit leaves uncertain.

* :mod:`agents.calibration.replay`: a history's plan and events played for many parameter sets
  and seeds in one batch; observations read off the replay.
* :mod:`agents.calibration.backtest`: every observation beside the simulated value, the band,
  the JSON, CSV and plot of ``scripts/backtest.py``.
* :mod:`agents.calibration.fit`: bounded least squares of the log errors and the emcee posterior
  (the error model is stated there).
* :mod:`agents.calibration.report`: the fitted scenario and the ensemble files, the fit table.
* :mod:`agents.calibration.sensitivity`: Morris sensitivity of the headline outcomes.

History files are read by :mod:`envs.history`; parameter sets are packed into one model by
:mod:`envs.ensemble`.
"""
