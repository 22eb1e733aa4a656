"""The Alembic revisions shipped in the package: one linear chain, numbered in the order they apply,
frozen (no revision reads the models, which move on), and all installed with the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from heimdall_pipeline import settings
from heimdall_pipeline.db.migrations import ALEMBIC_DIR, BASELINE_REVISION, head_revision, script_directory


def test_revisions_form_one_numbered_chain_from_the_baseline():
    revisions = list(script_directory().walk_revisions())[::-1]  # base first
    assert revisions[0].revision == BASELINE_REVISION and revisions[0].down_revision is None
    assert revisions[-1].revision == head_revision()
    for number, (previous, revision) in enumerate(zip([None, *revisions], revisions), start=1):
        assert revision.revision == f"{number:04d}", "revision ids are 0001, 0002, ... in order"
        assert revision.down_revision == (previous.revision if previous else None)
        path = Path(revision.path)
        assert re.fullmatch(rf"{revision.revision}_[a-z0-9_]+\.py", path.name), path.name
        assert revision.doc, f"{path.name}: the first docstring line says what the revision does"


def test_revisions_never_import_the_models():
    for path in sorted((ALEMBIC_DIR / "versions").glob("*.py")):
        imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.Import) for alias in node.names}
        assert not any(name and name.startswith("heimdall_pipeline.db.models") for name in imported), path.name


def test_every_alembic_file_is_package_data():
    """The environment and revisions are read by file path: setup.py must ship each one."""
    tree = ast.parse((settings.REPO_ROOT / "setup.py").read_text())
    [setup_call] = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"]
    package_data = ast.literal_eval(next(k.value for k in setup_call.keywords if k.arg == "package_data"))
    package_dir = ALEMBIC_DIR.parent
    shipped = {path for pattern in package_data["heimdall_pipeline.db"] for path in package_dir.glob(pattern)}
    files = {path for path in ALEMBIC_DIR.rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    assert files and files <= shipped, sorted(str(p.relative_to(package_dir)) for p in files - shipped)
