"""Configuration: every setting is an environment variable with a documented default.

The embedded services (`heimdall services up`) write their generated, local-only credentials to
`$HEIMDALL_HOME/services.env`; `load_embedded_env()` copies those into the process environment
for any variable the user has not set, so `dagster dev`, the CLI and the tests find the local
services without any secret in the code. In production the variables come from the deployment
(docker/.env, Kubernetes secrets) and no services.env exists.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Documented defaults (non-secret). Secrets have no default: they come from the environment.
# The embedded services' ports stay below Linux's ephemeral range (32768-60999), where an
# outgoing connection may hold the port and make `services up` fail now and then. A runtime
# folder keeps the ports saved in its services.env, so changing a default moves only new folders.
DEFAULTS = {
    "HEIMDALL_S3_BUCKET": "heimdall-raw-iq",
    "HEIMDALL_S3_REGION": "us-east-1",
    "HEIMDALL_S3_PORT": "8333",
    "HEIMDALL_PG_PORT": "15432",
}


def heimdall_home() -> Path:
    return Path(os.environ.get("HEIMDALL_HOME", REPO_ROOT / ".heimdall")).resolve()


def services_env_path() -> Path:
    return heimdall_home() / "services.env"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def load_embedded_env() -> dict[str, str]:
    """Fills unset variables from the embedded services' env file; returns what it set."""
    filled = {}
    for name, value in {**DEFAULTS, **read_env_file(services_env_path())}.items():
        if name not in os.environ:
            os.environ[name] = value
            filled[name] = value
    return filled


def setting(name: str) -> str:
    """A required setting; the error says which variable is missing and how to get it."""
    value = os.environ.get(name) or DEFAULTS.get(name)
    if not value:
        raise RuntimeError(
            f"environment variable {name} is not set: run `heimdall services up` for the embedded "
            f"local services, or export {name} for your own deployment"
        )
    return value
