"""The `heimdall` console entry skips the interpreter's teardown: what the command printed still
arrives (stdout to a pipe is block-buffered) and its exit code is the process's."""

from __future__ import annotations

import subprocess
import sys


def run_entry(body: str) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom heimdall_pipeline import cli\n" + body +
            "\ncli.main = main\ncli.console_main()\nprint('after the exit', file=sys.stderr)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_console_exit_keeps_the_output_and_the_exit_code():
    done = run_entry("def main():\n    print('x' * 100000)\n    print('problem', file=sys.stderr)\n    return 3")
    assert done.returncode == 3
    assert done.stdout == "x" * 100000 + "\n"
    assert done.stderr == "problem\n"  # nothing runs after the exit


def test_an_error_ends_the_usual_way():
    done = run_entry("def main():\n    raise SystemExit(5)")
    assert done.returncode == 5
    done = run_entry("def main():\n    raise RuntimeError('boom')")
    assert done.returncode == 1 and "RuntimeError: boom" in done.stderr


def test_a_profiled_command_still_writes_its_profile(tmp_path):
    out = tmp_path / "cli.prof"
    code = (f"import cProfile, sys\nfrom heimdall_pipeline import cli\ncli.main = lambda: 0\n"
            f"cProfile.run('cli.console_main()', {str(out)!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0
