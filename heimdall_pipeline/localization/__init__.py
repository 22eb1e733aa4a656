"""Where a session's transmitter is.

- `rss`: the received-power (RSS) estimator, `localize()`, and its inputs and result
  (`PowerObservation`, `LocalizationResult` with `to_row()` for the `localizations` table).
- `plotting`: the localization picture (matplotlib, imported when drawn).
- `accuracy`: the estimator's accuracy on synthetic observations (tests and
  scripts/localization_accuracy.py only).
- `geometry`: the tangent-plane helpers the estimators share.

A result carries its `method` ('rss' here), so other estimators (e.g. time difference of
arrival) store their results in the same table.
"""

from heimdall_pipeline.localization.rss import (
    DEFAULT_SHADOWING_SIGMA_DB,
    LocalizationResult,
    PowerObservation,
    localize,
)

__all__ = ["DEFAULT_SHADOWING_SIGMA_DB", "LocalizationResult", "PowerObservation", "localize"]
