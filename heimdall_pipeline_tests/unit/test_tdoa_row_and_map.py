"""A TDoA result as a `localizations` row and as a map picture (no services)."""

from datetime import datetime, timezone

import pytest

from heimdall_pipeline.db.localization_rows import tdoa_row
from heimdall_pipeline.plots.localization import plot_tdoa_localization
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS
from heimdall_pipeline.sources.simulator import Transmitter, simulate_capture
from heimdall_pipeline.tdoa import localize_tdoa, timed_capture

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
TRUTH = (48.3, 7.2)


@pytest.fixture(scope="module")
def captures():
    tx = Transmitter(frequency_hz=7.1e6 + 800.0, eirp_dbm=45.0, latitude=TRUTH[0], longitude=TRUTH[1],
                     modulation="noise")
    return [timed_capture(r, simulate_capture("tdoa-row", r, tx, 7.1e6, 12000.0, 3.0, START))
            for r in DEFAULT_RECEIVERS[:4]]


def test_a_tdoa_result_is_one_row_with_each_figure_stored_once(captures):
    result = localize_tdoa(captures, truth=TRUTH)
    assert result.localized
    row = tdoa_row(result, "s1", START)
    assert row.method == "tdoa" and row.localizable and row.reason is None
    assert (row.latitude, row.longitude) == (result.latitude, result.longitude)
    assert (row.ellipse_semi_major_km, row.ellipse_semi_minor_km, row.ellipse_orientation_deg) == (
        result.region.semi_major_km, result.region.semi_minor_km, result.region.major_bearing_deg)
    assert row.receivers_used == tuple(r.receiver_id for r in captures)
    assert row.pair_lags == [dict(p) for p in result.pairs] and len(row.pair_lags) == 6
    assert all("lag_error_s" in p and "true_lag_s" in p for p in row.pair_lags)
    # the columns' figures are not repeated in the JSON
    assert not {"pairs", "latitude", "longitude", "localized", "reason", "method"} & set(row.metadata_json)
    assert set(row.metadata_json["region_95"]) == {"confidence", "covariance_en_km2"}
    assert row.metadata_json["truth"]["error_km"] == result.error_km
    assert row.eirp_dbm is None and row.path_loss_exponent is None


def test_a_refused_tdoa_result_is_a_row_with_its_reason_and_no_point(captures):
    result = localize_tdoa(captures[:2])
    row = tdoa_row(result, "s1", START)
    assert row.method == "tdoa" and not row.localizable
    assert row.reason == "not localizable by TDoA: 2 timed receiver(s) with usable GNSS time, TDoA needs 3"
    assert row.latitude is None and row.longitude is None and row.ellipse_semi_major_km is None
    assert row.pair_lags is None and row.receivers_used == ()


def test_the_tdoa_map_is_drawn_for_located_and_refused_results(captures):
    for result in (localize_tdoa(captures, truth=TRUTH), localize_tdoa(captures[:2])):
        png = plot_tdoa_localization(result, TRUTH)
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
