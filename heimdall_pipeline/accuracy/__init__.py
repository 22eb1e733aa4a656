"""The estimators against a known truth, for `heimdall bench`, the tests and
scripts/localization_accuracy.py (never the pipeline): `rss` (received power, synthetic
observations), `tdoa` (real reference recordings and simulated captures)."""
