"""deploy/helm is checked without a cluster or the helm binary: the chart's dependency on Dagster's
chart, its values where that chart reads them, and the schema migration hook Job's structure."""

from __future__ import annotations

import re

import dagster
import pytest
import yaml

from heimdall_pipeline import settings
from heimdall_pipeline.cli import build_parser

HELM = settings.REPO_ROOT / "deploy" / "helm"
TEMPLATE_COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}\n?", re.DOTALL)
TEMPLATE_CONTROL_LINE = re.compile(r"^\s*\{\{-.*\}\}\s*$")
TEMPLATE_EXPRESSION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((HELM / "values.yaml").read_text())


def template_skeleton(text: str) -> tuple[dict, list[str]]:
    """The template as YAML with its control lines (range/end/toYaml blocks, comments) left out and
    each inline {{ expression }} replaced by a placeholder; and the expressions, in order."""
    kept = [line for line in TEMPLATE_COMMENT.sub("", text).splitlines() if not TEMPLATE_CONTROL_LINE.match(line)]
    body = "\n".join(kept)
    inline = TEMPLATE_EXPRESSION.findall(body)
    return yaml.safe_load(TEMPLATE_EXPRESSION.sub("TEMPLATED", body)), inline


def test_chart_depends_on_dagsters_chart_at_the_installed_minor_version(values):
    chart = yaml.safe_load((HELM / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "heimdall"
    [dependency] = chart["dependencies"]
    assert dependency["name"] == "dagster" and dependency["repository"] == "https://dagster-io.github.io/helm"
    # Dagster's chart version is Dagster's version: the chart must match the library the code runs.
    major, minor = dagster.__version__.split(".")[:2]
    assert dependency["version"] == f"~{major}.{minor}.0"
    # Dagster's values sit under the dependency's name; `global` is shared with it.
    assert set(values) == {"global", "dagster", "schemaMigration"}
    assert {"dagsterWebserver", "dagster-user-deployments", "runLauncher", "dagsterDaemon"} <= set(values["dagster"])
    assert values["global"]["postgresqlSecretName"]


def test_schema_migration_is_a_pre_install_pre_upgrade_hook_job_with_the_user_code_image(values):
    text = (HELM / "templates" / "job-migrate.yaml").read_text()
    job, expressions = template_skeleton(text)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    # the command exists as written
    args = build_parser().parse_args(container["command"][1:])
    assert container["command"][0] == "heimdall" and (args.command, args.action) == ("db", "migrate")
    assert [next(iter(source)) for source in container["envFrom"]] == ["configMapRef", "secretRef"]

    # The image and environment are the user-code deployment's, read from the values at render time.
    assert '$userCode := index .Values.dagster "dagster-user-deployments" "deployments" 0' in text
    assert "$userCode.image.repository" in expressions and "$userCode.image.tag" in expressions
    assert "{{- range $userCode.envConfigMaps }}" in text and "{{- range $userCode.envSecrets }}" in text
    user_code = values["dagster"]["dagster-user-deployments"]["deployments"][0]
    assert user_code["image"]["repository"] and user_code["image"]["tag"] != "latest"
    assert user_code["envSecrets"] == [{"name": "heimdall-env"}]  # HEIMDALL_DATABASE_URL lives there
    assert user_code["dagsterApiGrpcArgs"][-1] == "heimdall_pipeline.definitions"
    # Every .Values path the template reads exists in values.yaml.
    for path in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
        node = values
        for key in path.split("."):
            assert key in node, f"template reads .Values.{path}, absent from values.yaml"
            node = node[key]
    assert values["schemaMigration"]["backoffLimit"] == 0
