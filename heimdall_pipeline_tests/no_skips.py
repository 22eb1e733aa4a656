"""pytest plugin: a test never skips. A missing service or file is a failure, so a green run
always means every test ran (and `.ci/run` fails when one could not). A skip (pytest.skip,
skipif, a module-level skip) becomes a failure naming its reason; xfail is left as it is."""

from __future__ import annotations

import pytest


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _skip_as_failure(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but tests never skip: {_skip_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_as_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _skip_as_failure(outcome.get_result())
