#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then lint, type-check and test.
# Idempotent: a second run reuses the venv, node_modules and installed packages.
set -euo pipefail
cd "$(dirname "$0")/.."

# System services the end-to-end tests start for real (Debian packages).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || need+=(nginx)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]}; tests that need them will skip" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'

if [ -f client_js/package.json ]; then
  (cd client_js && npm ci --no-audit --no-fund --loglevel=error)
fi

lint=(server tests)
[ -d loadtest ] && lint+=(loadtest)
.venv/bin/ruff check "${lint[@]}"
.venv/bin/ruff format --check "${lint[@]}"
.venv/bin/mypy
if [ $# -eq 0 ]; then
  # CTranslate2's int8 kernels differ between CPUs (AVX-512 on some, AVX2 and oneDNN on
  # AMD EPYC): the tests that assert on model output run on the AVX2 path as well.
  CT2_FORCE_CPU_ISA=AVX2 CT2_USE_MKL=0 .venv/bin/python -m pytest -q tests/test_engine.py
fi
.venv/bin/python -m pytest "$@"
