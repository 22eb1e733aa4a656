"""The suite's rule that a test never skips: the plugin turns every kind of skip into a failure
(run in a child pytest over a throw-away test file)."""

import os
import subprocess
import sys

from heimdall_pipeline import settings

SKIPPING = '''
import pytest

def test_skips_in_its_body():
    pytest.skip("no database here")

@pytest.mark.skipif(True, reason="no docker-compose here")
def test_skipped_by_a_mark():
    pass

@pytest.mark.xfail(reason="a known bug")
def test_expected_failure():
    assert False

def test_passes():
    pass
'''


def run_child(tmp_path, source: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_child.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(settings.REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "heimdall_pipeline_tests.no_skips", "-p",
                           "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path), "-rA",
                           str(tmp_path / "test_child.py")], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)


def test_a_skip_is_a_failure_with_its_reason(tmp_path):
    done = run_child(tmp_path, SKIPPING)
    assert done.returncode == 1, done.stdout
    assert "tests never skip: Skipped: no database here" in done.stdout
    assert "tests never skip: Skipped: no docker-compose here" in done.stdout
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in done.stdout, done.stdout[-800:]


def test_a_module_level_skip_is_a_failure(tmp_path):
    done = run_child(tmp_path, 'import pytest\npytest.skip("no data", allow_module_level=True)\n\n'
                               'def test_x():\n    pass\n')
    assert done.returncode != 0 and "tests never skip: Skipped: no data" in done.stdout, done.stdout
