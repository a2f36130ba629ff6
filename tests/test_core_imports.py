"""The sans-I/O session core stays pure: no model runtime, no web stack, no scheduler."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ("faster_whisper", "ctranslate2", "starlette", "earshot.scheduler")
CORE = (
    "earshot.session",
    "earshot.endpointing",
    "earshot.vad",
    "earshot.audio",
    "earshot.pacing",
    "earshot.protocol",
)


@pytest.mark.parametrize("module", CORE)
def test_the_session_core_imports_no_engine_web_or_scheduler(module: str) -> None:
    code = f"import sys, {module}\nprint(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"
