"""Helpers shared by the job tests (both backends) and the OpenAI-compatibility test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import redis

from earshot.jobs_client import TERMINAL, JobsClient
from earshot.server_process import free_port

CONTAINERS = {
    # extension: (PyAV format, codec, sample rate)
    "flac": ("flac", "flac", 16000),
    "mp3": ("mp3", "libmp3lame", 16000),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "m4a": ("ipod", "aac", 16000),
}


def encode(audio: np.ndarray, path: Path) -> Path:
    """Write 16 kHz float32 ``audio`` in the container of ``path``'s extension."""
    fmt, codec, rate = CONTAINERS[path.suffix.lstrip(".")]
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        for i in range(0, len(pcm), 16000):
            chunk = pcm[None, i : i + 16000]
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def wait_until(
    client: JobsClient,
    job_id: str,
    predicate: Any = lambda job: job["status"] in TERMINAL,
    *,
    timeout: float = 120.0,
    poll: float = 0.1,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Poll the job until ``predicate(job)``; every state seen is appended to ``seen``."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.status(job_id)
        if seen is not None:
            seen.append(job)
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id}: still {job['status']} after {timeout} s")
        time.sleep(poll)


def statuses(seen: list[dict[str, Any]]) -> list[str]:
    """The distinct statuses in the order they were seen."""
    out: list[str] = []
    for job in seen:
        if not out or out[-1] != job["status"]:
            out.append(job["status"])
    return out


def post_file(base_url: str, path: str, content: bytes, **fields: str) -> httpx.Response:
    return httpx.post(
        base_url + path, files={"file": ("upload.bin", content)}, data=fields, timeout=60
    )


class RedisServer:
    """A private ``redis-server`` on a free loopback port, data in ``folder``; ``extra``:
    more ``redis-server`` options (``--maxmemory 64mb``), ``password``: ``requirepass``."""

    def __init__(self, folder: Path, *extra: str, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not installed (apt-get install redis-server)")
        self.port = free_port()
        self.password = password
        self.url = f"redis://127.0.0.1:{self.port}"
        auth = ["--requirepass", password] if password else []
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(folder),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", *auth, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        client = self.client()
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
            finally:
                client.close()

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, password=self.password)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class WorkerProcess:
    """``earshot worker --jobs URL ...`` as a child process, stopped by its PID."""

    def __init__(
        self, url: str, *args: str, env: dict[str, str] | None = None, log_path: Path
    ) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "earshot", "worker", "--jobs", url, "--log-level", "info",
             *args],
            env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # Celery's warm shutdown: finish the task, then exit
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
