"""The production layout on one machine: Debian's real nginx with the project's config
(deploy/nginx/earshot.conf.template, the file the compose stack and the Kubernetes
ConfigMap use) in front of two real ``earshot serve`` replicas, and a real Redis.

Replica A takes at most 2 sessions and B at most 4, so both "full" cases are cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.conftest import ARTIFACTS, REPO, Clip
from tests.waiting import async_poll_until, poll_until
from websockets.exceptions import InvalidStatus

from earshot.client import Overloaded, Stream, connect, stream_audio
from earshot.server_process import ServerProcess, free_port
from earshot.wer import error_rate

TEMPLATE = REPO / "deploy" / "nginx" / "earshot.conf.template"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
REDIS = shutil.which("redis-server")
CLIP = "ljspeech_LJ001-0001"
MAX_BODY = "1m"
"""Rendered small so the test can exceed it cheaply; production uses 101m."""
API_RATE, API_BURST = "5r/s", 5
STREAMS_PER_CLIENT = 6
"""= A's 2 + B's 4 sessions: a client can fill both replicas, and no more."""


def jobs_redis_mode() -> bool:
    """Whether the jobs subsystem has its distributed (Redis + Celery) backend."""
    modules = ("earshot.jobs.redis_store", "earshot.jobs.celery_backend")
    return all(importlib.util.find_spec(m) is not None for m in modules)


def render_template(text: str, values: dict[str, str]) -> str:
    """What the nginx image's envsubst does to ``${NGINX_*}``: every one must be given."""
    missing = sorted(set(re.findall(r"\$\{(NGINX_[A-Z_]+)\}", text)) - set(values))
    assert not missing, f"template variables without a value: {missing}"
    return re.sub(r"\$\{(NGINX_[A-Z_]+)\}", lambda m: values[m.group(1)], text)


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        return False

    poll_until(listening, timeout, what=f"{what} to listen on {port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Stack:
    nginx_port: int
    a: ServerProcess
    b: ServerProcess
    jobs_shared: bool

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.nginx_port}/v1/listen"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"


def nginx_main_config(workdir: Path, site: Path) -> str:
    """The main-context boilerplate the nginx image has in /etc/nginx/nginx.conf, pointing
    every path into ``workdir``; the project's config is included as the image does."""
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / name).mkdir(exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""{user}
worker_processes 1;
error_log {workdir}/error.log info;
pid {workdir}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    default_type application/octet-stream;
    include {site};
}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if NGINX is None:
        pytest.skip("nginx not installed (scripts/test.sh installs Debian's nginx)")
    workdir = tmp_path_factory.mktemp("nginx")
    shared = jobs_redis_mode()
    redis = None
    if shared:
        redis = _start_fixture_redis(tmp_path_factory)
    data = tmp_path_factory.mktemp("jobs-data")
    jobs_args: tuple[str, ...] = ()
    if redis is not None:
        jobs_args = ("--jobs", redis[1], "--data-dir", str(data))
    ARTIFACTS.mkdir(exist_ok=True)
    common = ("--cpu-threads", "1", *jobs_args)
    a = ServerProcess(
        "--replica-id", "A", "--max-sessions", "2", *common,
        *(() if shared else ("--data-dir", str(data / "A"))),
        log_path=ARTIFACTS / "deploy-replica-a.log",
    )  # fmt: skip
    b = ServerProcess(
        "--replica-id", "B", "--max-sessions", "4", *common,
        *(() if shared else ("--data-dir", str(data / "B"))),
        log_path=ARTIFACTS / "deploy-replica-b.log",
    )  # fmt: skip
    port = free_port()
    site = workdir / "earshot.conf"
    site.write_text(
        render_template(
            TEMPLATE.read_text(),
            {
                "NGINX_PORT": f"127.0.0.1:{port}",
                "NGINX_UPSTREAM_SERVERS": " ".join(
                    f"server 127.0.0.1:{r.port} max_fails=0;" for r in (a, b)
                ),
                "NGINX_MAX_BODY_SIZE": MAX_BODY,
                "NGINX_API_RATE": API_RATE,
                "NGINX_API_BURST": str(API_BURST),
                "NGINX_STREAM_RATE": "20r/s",
                "NGINX_STREAM_BURST": "40",
                "NGINX_STREAMS_PER_CLIENT": str(STREAMS_PER_CLIENT),
            },
        )
    )
    main = workdir / "nginx.conf"
    main.write_text(nginx_main_config(workdir, site))
    base = [NGINX, "-p", str(workdir), "-c", str(main), "-e", "stderr"]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, f"nginx -t refused the rendered config:\n{check.stderr}"
    processes: list[subprocess.Popen[bytes]] = []
    worker: subprocess.Popen[bytes] | None = None
    log = open(workdir / "nginx.stderr", "wb")  # noqa: SIM115
    try:
        a.start()
        b.start()
        if redis is not None:
            worker = _start_worker(redis[1], data)
            processes.append(worker)
        nginx = subprocess.Popen([*base, "-g", "daemon off;"], stdout=log, stderr=log)
        processes.append(nginx)
        _wait_port(port, nginx, "nginx", 20)
        yield Stack(port, a, b, jobs_shared=shared)
    finally:
        for process in reversed(processes):
            _stop(process)
        a.stop()
        b.stop()
        if redis is not None:
            _stop(redis[0])
        log.close()
        with contextlib.suppress(OSError):
            shutil.copy(workdir / "error.log", ARTIFACTS / "deploy-nginx-error.log")


def _start_fixture_redis(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.Popen[bytes], str]:
    if REDIS is None:
        pytest.skip("redis-server not installed (scripts/test.sh installs it)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    command = [
        REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait_port(port, process, "redis-server", 20)
    return process, f"redis://127.0.0.1:{port}/0"


def _start_worker(redis_url: str, data: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "earshot", "worker", "--jobs", redis_url,
        "--data-dir", str(data), "--cpu-threads", "1", "--log-level", "warning",
    ]  # fmt: skip
    with open(ARTIFACTS / "deploy-worker.log", "wb") as log:  # the child keeps its own copy
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _get_json(url: str) -> tuple[int, dict[str, object], dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def _busy_ratio(server: ServerProcess) -> float:
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r"^earshot_engine_busy_ratio\s+(\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def _idle(*servers: ServerProcess) -> None:
    """Wait until no server counts an open session (closes are asynchronous) and the
    engines are idle enough that admission control takes new sessions (a busy engine
    refuses them even below --max-sessions, which would move sessions elsewhere)."""
    for server in servers:

        def idle(server: ServerProcess = server) -> bool:
            status, body, _ = _get_json(server.http_url + "/readyz")
            return status == 200 and body["active_sessions"] == 0 and _busy_ratio(server) < 0.3

        await async_poll_until(
            idle, timeout=15, what=f"{server.http_url} to have no session and an idle engine"
        )


def _replica(stream: Stream) -> str | None:
    assert stream.ready is not None
    return stream.ready.replica


@pytest.mark.asyncio
async def test_stream_through_nginx_gets_correct_finals(
    stack: Stack, speech: dict[str, Clip]
) -> None:
    clip = speech[CLIP]
    result = await stream_audio(
        stack.ws_url, clip.audio(), speed=3.0, trailing_silence_s=1.0, language="en"
    )
    assert result.close_code == 1000
    assert result.finals, "no final came back through the proxy"
    assert error_rate([clip.text], [result.text]) <= 0.12, result.text
    assert [f.utterance for f in result.finals] == list(range(len(result.finals)))


@pytest.mark.asyncio
async def test_sessions_spread_over_both_replicas(stack: Stack) -> None:
    await _idle(stack.a, stack.b)
    async with contextlib.AsyncExitStack() as held:
        replicas = [
            _replica(await held.enter_async_context(connect(stack.ws_url))) for _ in range(4)
        ]
    assert set(replicas) == {"A", "B"}, replicas  # least_conn alternates: A, B, A, B


@pytest.mark.asyncio
async def test_full_replica_sends_new_sessions_to_the_other(stack: Stack) -> None:
    await _idle(stack.a, stack.b)
    async with contextlib.AsyncExitStack() as held:
        # Fill A (2 sessions) behind nginx's back: nginx still counts it as empty.
        for _ in range(2):
            await held.enter_async_context(connect(stack.a.ws_url))
        with pytest.raises(Overloaded):
            async with connect(stack.a.ws_url, retries=0):
                pass
        # Through nginx every new session lands on B, without a retry by the client:
        # A refuses the handshake with 503 and nginx tries B.
        for _ in range(3):
            opened = connect(stack.ws_url, retries=0)
            stream = await held.enter_async_context(opened)
            assert _replica(stream) == "B"
            assert opened.attempts == 1
        # Now fill B too (4): every replica is full, the client gets 1013 through the
        # proxy and retries with backoff until a slot frees up on B.
        last_on_b = connect(stack.b.ws_url)
        await last_on_b.__aenter__()
        with pytest.raises(Overloaded):
            async with connect(stack.ws_url, retries=0):
                pass

        retrying = connect(stack.ws_url, retries=8, backoff_s=0.2, max_backoff_s=1.0)

        async def free_a_slot_on_b() -> None:
            # Once the client has been refused and is retrying (its 2nd attempt).
            await async_poll_until(lambda: retrying.attempts >= 2, timeout=30, interval=0.02)
            await last_on_b.__aexit__(None, None, None)

        freeing = asyncio.create_task(free_a_slot_on_b())
        stream = await held.enter_async_context(retrying)
        await freeing
        assert _replica(stream) == "B"
        assert retrying.attempts >= 2


@pytest.mark.asyncio
async def test_proxy_limits_concurrent_streams_per_client_with_429(stack: Stack) -> None:
    await _idle(stack.a, stack.b)
    async with contextlib.AsyncExitStack() as held:
        replicas = [
            _replica(await held.enter_async_context(connect(stack.ws_url)))
            for _ in range(STREAMS_PER_CLIENT)
        ]
        assert sorted(replicas) == ["A"] * 2 + ["B"] * 4  # both replicas full
        with pytest.raises(InvalidStatus) as info:
            async with connect(stack.ws_url, retries=0):
                pass
        assert info.value.response.status_code == 429
        assert json.loads(info.value.response.body or b"{}")["error"] == "rate_limited"


def test_proxy_refuses_bodies_over_the_jobs_limit_with_413(stack: Stack) -> None:
    body = b"\0" * (2 * 1024 * 1024)  # 2 MB against a 1m limit
    request = urllib.request.Request(
        stack.http_url + "/v1/jobs",
        data=body,
        headers={"Content-Type": "application/octet-stream"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 413
    assert json.loads(info.value.read())["error"] == "file_too_large"


@pytest.mark.skipif(
    not jobs_redis_mode(),
    reason="NEEDS the jobs Redis mode (earshot.jobs.redis_store + celery_backend):"
    " a job submitted through one replica must be readable through the other",
)
def test_job_submitted_through_one_replica_is_read_through_the_other(
    stack: Stack, speech: dict[str, Clip]
) -> None:
    assert stack.jobs_shared
    clip = speech["ljspeech_LJ001-0002"]
    with httpx.Client(timeout=30) as client:
        submitted = client.post(
            stack.a.http_url + "/v1/jobs",
            files={"file": (clip.file, clip.path.read_bytes(), "audio/wav")},
            data={"language": "en"},
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        on_b = client.get(f"{stack.b.http_url}/v1/jobs/{job_id}")
        assert on_b.status_code == 200, on_b.text
        assert on_b.json()["status"] in ("queued", "running", "done")

        def finished() -> str | None:
            polled = client.get(f"{stack.http_url}/v1/jobs/{job_id}")
            assert polled.status_code == 200, polled.text
            status: str = polled.json()["status"]
            return status if status in ("done", "failed") else None

        # Through nginx (either replica answers), slower than its API rate limit.
        assert poll_until(finished, timeout=90, interval=0.5, what=f"job {job_id}") == "done"
        for url in (stack.a.http_url, stack.b.http_url):
            result = client.get(f"{url}/v1/jobs/{job_id}/result", params={"format": "text"})
            assert result.status_code == 200, result.text
            assert error_rate([clip.text], [result.text]) <= 0.12, result.text


def test_proxy_rate_limits_each_client_with_429(stack: Stack) -> None:
    """Last: it empties this client's bucket (refilled at 5 r/s a second later)."""
    codes: list[int] = []
    limited: dict[str, object] = {}
    headers: dict[str, str] = {}
    for _ in range(4 * API_BURST):
        status, body, response_headers = _get_json(stack.http_url + "/healthz")
        codes.append(status)
        if status == 429:
            limited, headers = body, response_headers
    assert codes.count(200) >= API_BURST, codes
    assert codes.count(429) >= API_BURST, codes
    assert set(codes) == {200, 429}, codes
    assert limited["error"] == "rate_limited"
    assert headers.get("Retry-After") == "1"
    # The replicas themselves were never asked: the limit lives in the proxy, and its
    # bucket refills (5 r/s): polled slower than that, the proxy answers 200 again.
    poll_until(
        lambda: _get_json(stack.http_url + "/healthz")[0] == 200,
        timeout=10,
        interval=0.5,
        what="the proxy's rate limit to let requests through again",
    )
