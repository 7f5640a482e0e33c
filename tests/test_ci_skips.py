"""CVAE_NO_SKIPS=1 (what .ci/run sets): a skip fails the run unless its reason names a GPU."""

import subprocess
import sys

import pytest

from conftest import REPO

SUITE = '''
import pytest

def test_runs():
    assert True

def test_needs_a_browser():
    pytest.skip("no Chromium: apt-get install chromium")

def test_needs_a_gpu():
    pytest.skip("needs a GPU")
'''
ONLY_GPU = '''
import pytest

def test_runs():
    assert True

def test_needs_a_gpu():
    pytest.skip("needs a GPU")
'''
# The suite's own hooks, in a folder of its own.
CONFTEST = f'''
import importlib.util

spec = importlib.util.spec_from_file_location("suite_conftest", {str(REPO / "tests/conftest.py")!r})
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)
pytest_terminal_summary = suite.pytest_terminal_summary
pytest_sessionfinish = suite.pytest_sessionfinish
'''


def _pytest(tmp_path, suite: str, no_skips: bool) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_suite.py").write_text(suite)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
           **({"CVAE_NO_SKIPS": "1"} if no_skips else {})}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("no_skips", [False, True])
def test_a_browser_skip_fails_only_when_skips_are_refused(tmp_path, no_skips):
    result = _pytest(tmp_path, SUITE, no_skips)
    assert "1 passed, 2 skipped" in result.stdout
    if no_skips:
        assert result.returncode == 1, result.stdout
        assert "test_needs_a_browser: Skipped: no Chromium" in result.stdout
        assert "test_needs_a_gpu" not in result.stdout.split("other than a GPU:")[1]
    else:
        assert result.returncode == 0, result.stdout


def test_a_gpu_skip_is_allowed(tmp_path):
    result = _pytest(tmp_path, ONLY_GPU, no_skips=True)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped" in result.stdout
