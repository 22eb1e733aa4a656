"""Run tag names, in one place: the pipeline's own, and the Dagster tags it reads or sets that
`dagster` does not export (unit/test_tags.py compares them with Dagster's own constants).

Dagster's: a single run over a partition range is requested by the two range tags (`RunRequest`
takes one `partition_key`; `RunRequest.for_asset_graph_subset` goes through the backfill daemon,
not one run), and a run's partition is its partition tag (`execute_job` has no partition argument
and `DagsterRun` no public partition accessor). `MAX_RUNTIME_SECONDS_TAG` is exported by `dagster`.
"""

# the pipeline's own
SESSION_TAG = "heimdall/session"  # the session a run records or analyses
LAUNCH_TAG = "heimdall/launch"  # the launch (sessions.run_id) every run of one launch shares
RECEIVER_TAG_PREFIX = "heimdall/receiver."  # one tag per receiver a session run records (concurrency limits)
SURVEY_TAG = "heimdall/survey"  # runs of the survey schedule
MAINTENANCE_TAG = "heimdall/maintenance"  # maintenance runs (the archive job)
# On a capture run: "inline" when its launcher runs the session's analysis itself (`heimdall session
# run`), so the analysis sensor leaves it. On an analysis run: the capture run it follows.
ANALYSIS_TAG = "heimdall/analysis"
ANALYSIS_OF_TAG = "heimdall/analysis_of"

# Dagster's (dagster._core.storage.tags)
PARTITION_NAME_TAG = "dagster/partition"
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
