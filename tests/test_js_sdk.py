"""The JavaScript SDK (client_js/): its own `node --test` unit tests, then the SDK in Node
against a real `earshot serve` with the bundled model, streaming real speech."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from tests.conftest import SPEECH_DIR, Clip

from earshot.server_process import ServerProcess

CLIENT_DIR = Path(__file__).resolve().parents[1] / "client_js"


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node (>= 20) is not installed: the JS SDK tests need it")
    return path


def ensure_node_modules() -> None:
    """`npm ci` when node_modules is missing or older than package-lock.json."""
    installed = CLIENT_DIR / "node_modules" / ".package-lock.json"
    lock = CLIENT_DIR / "package-lock.json"
    if installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: the JS SDK tests need it")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=CLIENT_DIR,
        check=True,
        timeout=600,
    )


def run_node_tests(*files: str, env: dict[str, str], timeout: float) -> str:
    """`node --test FILES` in client_js; returns the TAP output, failing on any failure."""
    ensure_node_modules()
    # The runner cancels a hung test itself (and says which); its own process group is
    # killed whole if even that hangs, so no test process outlives this call holding a
    # connection to the shared server.
    per_test = f"--test-timeout={int(timeout * 1000 * 0.8)}"
    with subprocess.Popen(
        [node(), "--test", per_test, *files],
        cwd=CLIENT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(f"node --test hung for {timeout} s:\n{stdout[-6000:]}") from None
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    output = result.stdout + result.stderr
    print(output)  # the TAP report, with the measured WER and latencies, for pytest -s / failures
    assert result.returncode == 0, f"node --test failed:\n{output[-6000:]}"
    counts = {
        k: int(v) for k, v in re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", output, re.M)
    }
    assert (
        counts.get("pass", 0) > 0 and counts.get("fail", 0) == 0 and counts.get("cancelled", 0) == 0
    )
    return output


def test_node_unit_tests() -> None:
    """Framing, resampling, message parsing, reconnection bookkeeping, the client against a
    fake and a toy `ws` server, and the TypeScript declarations (`npm test`)."""
    # Without EARSHOT_URL the real-server file skips itself; the next test runs it.
    env = {k: v for k, v in os.environ.items() if k != "EARSHOT_URL"}
    run_node_tests("test/", env=env, timeout=300)


def test_node_sdk_against_real_server(
    earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    """Live pacing with partials, msgpack + f32 at 48 kHz + word timestamps, finalize(),
    a connection killed mid-stream (no final lost or repeated), and a refused handshake."""
    env = {
        **os.environ,
        "EARSHOT_URL": earshot_server.http_url,
        "EARSHOT_SPEECH_DIR": str(SPEECH_DIR),
    }
    output = run_node_tests("test/integration.test.js", env=env, timeout=300)
    assert re.search(r"^# skipped 0$", output, re.M), "the integration tests skipped"
    assert re.search(r"^# pass 5$", output, re.M)
