"""The machine a benchmark ran on, for its report: CPU model, cores, SIMD flags.

CTranslate2's int8 speed and results differ between AVX2 and AVX-512 hosts, so every
benchmark records which it had (and ``CT2_FORCE_CPU_ISA`` when set, which picks the
kernels regardless of the CPU).
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

SIMD_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")


def machine() -> dict[str, Any]:
    cpu, flags = platform.processor(), set[str]()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    report: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "simd": [f for f in SIMD_FLAGS if f in flags],
        "platform": platform.platform(),
    }
    if isa := os.environ.get("CT2_FORCE_CPU_ISA"):
        report["ct2_force_cpu_isa"] = isa
    return report
