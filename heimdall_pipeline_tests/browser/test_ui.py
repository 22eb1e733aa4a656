"""The Dagster UI, used in a real browser: a session requested from the launchpad and launched by
the sensor, the asset graph, a backfill, and a raw_iq partition's metadata with its spectrum.

The tests share one webserver + daemon (see conftest.py) and run in file order: the launchpad
session gives the graph and the partition page something to show.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from heimdall_pipeline_tests.dev_server import wait_until

pytestmark = pytest.mark.browser

LOCATION = "heimdall_pipeline"
RECEIVERS = ["f5len", "ph0m", "hb9q"]
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

# Shared between the tests of this module (set by the launchpad test).
state: dict[str, str] = {}


# -- helpers -----------------------------------------------------------------------------------
def gql(base_url: str, query: str, **variables) -> dict:
    """A GraphQL call as the UI makes it."""
    request = urllib.request.Request(f"{base_url}/graphql", data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        body = json.load(response)
    assert not body.get("errors"), body["errors"]
    return body["data"]


RUNS_QUERY = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
  results { runId status jobName tags { key value } } } } }"""


def runs(base_url: str, **filter_) -> list[dict]:
    return gql(base_url, RUNS_QUERY, filter=filter_)["runsOrError"]["results"]


def wait_for_run(base_url: str, run_id: str) -> str:
    def finished():
        found = runs(base_url, runIds=[run_id])
        return found and found[0]["status"] in TERMINAL and found[0]["status"]
    return wait_until(f"run {run_id} to finish", finished)


def open_ui(page, url: str, ready_text: str) -> None:
    """Opens a UI page and waits for a text; dismisses the community pop-up if it shows."""
    page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                             lambda: page.get_by_role("button", name="Skip").click())
    page.goto(url)
    page.get_by_text(ready_text).first.wait_for(timeout=60_000)


def screenshot(page, artifacts, name: str) -> str:
    path = artifacts / f"ui_{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")
    return str(path)


# -- b. launchpad → request_session_job → sensor → session_job --------------------------------
def test_session_requested_from_launchpad_is_launched_by_sensor(page, dagster_ui, ui_engine, artifacts):
    from heimdall_pipeline.db.sessions_repo import get_session

    session_key = f"ui{uuid.uuid4().hex[:10]}"
    open_ui(page, f"{dagster_ui}/locations/{LOCATION}/jobs/request_session_job/playground", "Launch Run")
    # The typed config form: the required frequency is reported missing, the scaffold adds it.
    page.get_by_text('Missing required config entry "center_frequency_hz"').wait_for(timeout=30_000)
    page.get_by_role("button", name="Scaffold missing config").click()
    page.get_by_role("button", name="Confirm").click()
    editor = "document.querySelector('.CodeMirror').CodeMirror"
    assert "center_frequency_hz" in page.evaluate(f"{editor}.getValue()")
    # The YAML a user types (CodeMirror's own API: typing key by key fights its auto-indent).
    page.evaluate(f"yaml => {editor}.setValue(yaml)", f"""ops:
  request_session_op:
    config:
      center_frequency_hz: 7100000.0
      duration_s: 2.0
      sample_rate_hz: 12000.0
      receiver_ids: [{", ".join(RECEIVERS)}]
      source_kind: simulated
      session_key: {session_key}
""")
    page.get_by_text("No errors").wait_for(timeout=30_000)
    screenshot(page, artifacts, "1_launchpad_request_session")
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url("**/runs/*", timeout=60_000)
    request_run_id = page.url.rstrip("/").split("/")[-1]
    assert wait_for_run(dagster_ui, request_run_id) == "SUCCESS"
    record = get_session(ui_engine, session_key)
    assert record is not None and sorted(record.receiver_ids) == sorted(RECEIVERS)

    # The daemon ticks the sensor (minimum interval 15 s), which launches the session: one run over
    # its capture partitions, first..last.
    def all_session_runs():
        found = [run for run in runs(dagster_ui, tags=[{"key": "heimdall/session", "value": session_key}])
                 if run["jobName"] == "session_job"]
        return found or None

    session_runs = wait_until(f"session_request_sensor to launch {session_key}", all_session_runs)
    assert len(session_runs) == 1
    for run in session_runs:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert run["jobName"] == "session_job"
        assert tags["dagster/sensor_name"] == "session_request_sensor"
    session_run_ids = [run["runId"] for run in session_runs]

    def sensor_state():
        return gql(dagster_ui, """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
            ... on Sensor { sensorState { status ticks(limit: 500) { status runIds } } } } }""",
                   selector={"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                             "sensorName": "session_request_sensor"})["sensorOrError"]["sensorState"]

    assert sensor_state()["status"] == "RUNNING"
    # The tick records its run ids when it finishes, which can be just after the run exists.
    wait_until("sensor ticks naming the session's runs",
               lambda: set(session_run_ids) <= {rid for tick in sensor_state()["ticks"] for rid in tick["runIds"]},
               timeout_s=120)

    assert [wait_for_run(dagster_ui, run_id) for run_id in session_run_ids] == ["SUCCESS"] * len(session_run_ids)
    page.goto(f"{dagster_ui}/runs/{session_run_ids[0]}")
    page.get_by_text("Success").first.wait_for(timeout=60_000)
    screenshot(page, artifacts, "2_session_run_success")
    assert get_session(ui_engine, session_key).status in ("launched", "succeeded")
    state["session_key"] = session_key


# -- a. the asset graph and its lineage ---------------------------------------------------------
def test_asset_graph_shows_lineage_partitions_and_checks(page, dagster_ui, artifacts):
    open_ui(page, f"{dagster_ui}/locations/{LOCATION}/asset-groups/heimdall", "session_summary")
    for name in ("raw_iq", "receiver_metrics", "session_summary", "session_localization"):
        assert page.get_by_text(name, exact=True).first.is_visible(), f"{name} not in the graph"
    # Each node shows its partition count and (raw_iq, receiver_metrics) their checks.
    assert page.get_by_text("Asset checks").count() >= 2
    assert page.get_by_text("Partitions").count() >= 3
    if "session_key" in state:  # at least the launchpad session's partitions exist
        assert page.get_by_text("0 partitions").count() == 0
    page.wait_for_timeout(1000)  # let the graph finish laying out
    shot = screenshot(page, artifacts, "3_asset_graph_heimdall")

    # Lineage, as the asset page states it: raw_iq → receiver_metrics → session_summary.
    def neighbours(asset: str) -> tuple[list[str], list[str]]:
        open_ui(page, f"{dagster_ui}/assets/{asset}", "Upstream assets")
        links = {}
        for side in ("Upstream assets", "Downstream assets"):
            hrefs = page.locator(f"xpath=//span[text()='{side}']/following-sibling::div//a").evaluate_all(
                "links => links.map(a => a.getAttribute('href'))")
            links[side] = sorted(h.split("/assets/")[1] for h in hrefs)
        return links["Upstream assets"], links["Downstream assets"]

    assert neighbours("receiver_metrics") == (["raw_iq"], ["session_localization", "session_summary"])
    assert neighbours("raw_iq")[1] == ["receiver_metrics"]
    assert neighbours("session_summary")[0] == ["receiver_metrics"]
    assert neighbours("session_localization")[0] == ["receiver_metrics"]
    assert shot


# -- d. a raw_iq partition: S3 key, sha256, presigned link, spectrum picture -------------------
def test_raw_iq_partition_page_shows_storage_metadata_and_spectrum(page, dagster_ui, artifacts):
    if "session_key" not in state:
        pytest.fail("needs the session recorded by the launchpad test (run the module in file order; "
                    "that test failed or was deselected)")
    session_key = state["session_key"]
    partition = f"{session_key}.{RECEIVERS[0]}"  # partitions.capture_key
    open_ui(page, f"{dagster_ui}/assets/raw_iq?view=partitions&partition={urllib.request.quote(partition)}",
            "s3_key")
    object_key = f"s3://heimdall-raw-iq/sessions/{session_key}/websdr_{RECEIVERS[0]}.npy"
    for text in ("receiver", "s3_key", "sha256", "presigned_url", "spectrum", object_key):
        assert page.get_by_text(text, exact=True).first.is_visible(), f"{text!r} not shown"
    presigned = page.locator(f"a[href*='sessions/{session_key}/websdr_{RECEIVERS[0]}.npy']")
    assert presigned.count() >= 1 and "Signature=" in presigned.first.get_attribute("href")
    image = page.locator(f"img[src*='websdr_{RECEIVERS[0]}']").first
    image.wait_for(timeout=30_000)
    image.scroll_into_view_if_needed()
    # The markdown image is fetched by the browser from S3 through the presigned URL.
    wait_until("the spectrum image to load", lambda: image.evaluate("img => img.complete && img.naturalWidth"),
               timeout_s=60, every_s=1)
    assert image.evaluate("img => img.naturalWidth") > 100
    screenshot(page, artifacts, "4_raw_iq_partition_metadata")


# -- c. a backfill over several sessions, launched like the UI does ----------------------------
def test_backfill_of_three_sessions_completes(dagster_ui, ui_engine, ui_instance):
    from heimdall_pipeline.db.measurements_repo import measurements_for_session
    from heimdall_pipeline.partitions import add_session_partitions, capture_key
    from heimdall_pipeline.session_requests import request_session

    # Scheduled for tomorrow: not due, so the session_request_sensor leaves them to the backfill.
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    batch = uuid.uuid4().hex[:8]
    receiver = RECEIVERS[0]
    sessions = [request_session(ui_engine, requested_by="browser-test", center_frequency_hz=14.2e6,
                                duration_s=1.0, receiver_ids=[receiver], source_kind="simulated",
                                session_key=f"bf{batch}{i}", scheduled_for=tomorrow).session_key for i in range(3)]
    add_session_partitions(ui_instance, {session: [receiver] for session in sessions})
    partitions = [capture_key(session, receiver) for session in sessions]

    result = gql(dagster_ui, """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
        ... on InvalidSubsetError { message } ... on UnauthorizedError { message } } }""",
                 params={"assetSelection": [{"path": ["raw_iq"]}, {"path": ["receiver_metrics"]}],
                         "partitionNames": partitions, "title": f"browser test {batch}"})
    launched = result["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
        status numPartitions runs(limit: 100) { runId status } } } }"""

    def done():
        backfill = gql(dagster_ui, query, id=backfill_id)["partitionBackfillOrError"]
        return backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING") and backfill
    backfill = wait_until(f"backfill {backfill_id}", done)
    assert backfill["status"] in ("COMPLETED_SUCCESS", "COMPLETED"), backfill
    assert backfill["runs"] and all(run["status"] == "SUCCESS" for run in backfill["runs"]), backfill["runs"]
    print(f"\nbackfill {backfill_id}: {len(partitions)} partitions in {len(backfill['runs'])} run(s)")
    # Single-run backfill policy on a multi-partitioned asset: Dagster makes one run per key range,
    # and its ranges run along the session dimension for one receiver key each. One receiver over
    # three sessions is therefore ONE run (three receivers would be three runs).
    assert len(backfill["runs"]) == 1
    for session in sessions:
        measured = {row.receiver_id for row in measurements_for_session(ui_engine, session)}
        assert measured == {receiver}, f"{session}: measurements for {sorted(measured)}"
