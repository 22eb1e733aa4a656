"""One place that recognises a service outage (PostgreSQL or S3 down, dying or refusing) in an
error, and says it in one line naming the service and the reason.

Used by every CLI command (`cli.main`), by `heimdall verify` and by `heimdall session run` for the
errors its runs recorded. An error is looked at along its whole chain: `__cause__` /
`__context__` of a live exception (Dagster wraps a resource's error in
DagsterResourceFunctionError, a step's in DagsterExecutionStepExecutionError) and `cause` /
`context` of an error Dagster stored with a run (SerializableErrorInfo). Never prints a secret:
the messages come from the drivers, which do not carry passwords, and S3 endpoints carry none.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from heimdall_pipeline.text import clip


# Errors of a run, known by class name only (the run stored them as text).
S3_CONNECTION_ERRORS = frozenset({"EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
                                  "ReadTimeoutError", "ConnectionError"})
DATABASE_CONNECTION_ERRORS = frozenset({"OperationalError", "InterfaceError"})


def _chain(error) -> Iterator:
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [getattr(current, "__cause__", None), getattr(current, "__context__", None),
                  getattr(current, "cause", None), getattr(current, "context", None),
                  getattr(current, "orig", None)]


def _endpoint(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


def _first_line(text) -> str:
    lines = str(text).strip().splitlines()
    return clip(" ".join(lines[0].split()) if lines else "", 200)


def _database(driver_error) -> str:
    # dagster-postgres talks psycopg2 (the Dagster instance), the project psycopg 3.
    which = ("the Dagster instance's database" if type(driver_error).__module__.startswith("psycopg2")
             else "the database")
    return f"{which} (PostgreSQL) is unreachable: {_first_line(driver_error)}"


def outage_message(error, *, s3_endpoint: str | None = None, bucket: str | None = None) -> str | None:
    """One line naming the service that is down or refusing and why, or None when `error` (an
    exception or a run's SerializableErrorInfo) is not an outage."""
    import sqlalchemy as sa
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

    from heimdall_pipeline.storage.object_store import ACCESS_DENIED_CODES, MISSING_BUCKET_CODES, error_code

    for item in _chain(error):
        name = getattr(item, "cls_name", None)  # an error stored with a run
        if name in S3_CONNECTION_ERRORS:
            return f"S3 failed: {_first_line(item.message)}"
        if name in DATABASE_CONNECTION_ERRORS:
            return f"the database (PostgreSQL) is unreachable: {_first_line(item.message)}"
        if isinstance(item, (BotoConnectionError, HTTPClientError)):
            endpoint = _endpoint(item.kwargs.get("endpoint_url", "") or s3_endpoint or "")
            return f"S3 at {endpoint} failed: could not connect ({_first_line(item.kwargs.get('error', item))})"
        if isinstance(item, (sa.exc.OperationalError, sa.exc.InterfaceError)) or (
                isinstance(item, sa.exc.DBAPIError) and item.connection_invalidated):
            return _database(item.orig if item.orig is not None else item)
        if type(item).__name__ in DATABASE_CONNECTION_ERRORS and type(item).__module__.split(".")[0] in (
                "psycopg", "psycopg2"):
            return _database(item)
        code = error_code(item) if isinstance(item, ClientError) else ""
        if code in ACCESS_DENIED_CODES:
            return (f"S3 at {s3_endpoint or 'HEIMDALL_S3_ENDPOINT_URL'} refused the keys ({code}): check "
                    "HEIMDALL_S3_ACCESS_KEY_ID / HEIMDALL_S3_SECRET_ACCESS_KEY")
        if code in MISSING_BUCKET_CODES and bucket:
            return (f"bucket {bucket!r} does not exist at {s3_endpoint} (create it with `heimdall services up` "
                    "or your S3 setup)")
    return None
