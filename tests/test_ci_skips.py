"""The CI rule of tests/conftest.py: under CI=true a skip fails the run, except on tests
marked gpu (a missing service must not pass as green)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOOKS = (
    "from tests.conftest import (pytest_collection_modifyitems, pytest_runtest_logreport,"
    " pytest_sessionfinish, pytest_terminal_summary)\n"
)
SUITE = """
import pytest

def test_passes() -> None:
    pass

@pytest.mark.gpu
def test_needs_a_gpu() -> None:
    pass

def test_needs_redis() -> None:
    SKIP
"""


def run(tmp_path: Path, ci: str, skip: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(HOOKS)
    (tmp_path / "test_suite.py").write_text(SUITE.replace("SKIP", skip))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs CUDA\n")
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("ci", "skip", "exit_code"),
    [
        ("true", 'pytest.skip("redis-server not installed")', 1),
        ("", 'pytest.skip("redis-server not installed")', 0),
        ("true", "pass", 0),  # only the gpu test skipped (no CUDA here): allowed
    ],
)
def test_a_skip_fails_only_under_ci(tmp_path: Path, ci: str, skip: str, exit_code: int) -> None:
    result = run(tmp_path, ci, skip)
    assert result.returncode == exit_code, result.stdout + result.stderr
    if exit_code:
        assert (
            "test_needs_redis: " in result.stdout
            and "test_needs_a_gpu" not in (result.stdout.split("skipped under CI=true")[1])
        )
