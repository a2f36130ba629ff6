"""The JS SDK refuses exactly the session options the server refuses: its ``LIMITS``
(client_js/src/messages.js) against ``earshot.protocol.parse_options`` at each edge."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from earshot.protocol import ParameterError, parse_options

MESSAGES_JS = Path(__file__).resolve().parents[1] / "client_js" / "src" / "messages.js"


def js_limits() -> dict[str, Any]:
    block = re.search(
        r"export const LIMITS = Object\.freeze\(\{(.*?)\}\);", MESSAGES_JS.read_text(), re.S
    )
    assert block, "LIMITS not found in messages.js"
    limits: dict[str, Any] = {}
    for name, low, high in re.findall(r"(\w+): Object\.freeze\(\[([\d.]+), ([\d.]+)\]\)", block[1]):
        limits[name] = (float(low), float(high))
    for name, value in re.findall(r"(\w+): ([\d.]+),", block[1]):
        limits[name] = float(value)
    return limits


def accepted(parameter: str, value: str) -> bool:
    try:
        parse_options({parameter: value})
    except ParameterError:
        return False
    return True


@pytest.mark.parametrize(
    ("js_name", "parameter", "step"),
    [
        ("sampleRate", "sample_rate", 1),
        ("endpointingMs", "endpointing_ms", 1),
        ("maxUtteranceS", "max_utterance_s", 0.01),
    ],
)
def test_ranges_match_the_server(js_name: str, parameter: str, step: float) -> None:
    low, high = js_limits()[js_name]
    fmt = (lambda v: str(int(v))) if step == 1 else str
    assert accepted(parameter, fmt(low)) and accepted(parameter, fmt(high))
    assert not accepted(parameter, fmt(low - step)) and not accepted(parameter, fmt(high + step))


def test_prompt_length_matches_the_server() -> None:
    chars = int(js_limits()["promptChars"])
    assert accepted("prompt", "é" * chars)
    assert not accepted("prompt", "é" * (chars + 1))
