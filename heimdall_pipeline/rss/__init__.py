"""Received-power (RSS) localization: where a transmitter is from the powers its receivers measured.

- `estimator`: the estimator, `localize()`, its inputs (`PowerObservation`) and its result
  (`LocalizationResult`, method 'rss'; its `localizations` row is built by db/localization_rows.py).

The time-difference estimator is tdoa/; both store their results in the same `localizations`
table, told apart by `method`. Pictures: plots/localization.py; accuracy figures: accuracy/.
"""

from heimdall_pipeline.rss.estimator import (
    DEFAULT_SHADOWING_SIGMA_DB,
    LocalizationResult,
    PowerObservation,
    localize,
)

__all__ = ["DEFAULT_SHADOWING_SIGMA_DB", "LocalizationResult", "PowerObservation", "localize"]
