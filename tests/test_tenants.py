"""Tenants, job quotas and protected mode on real servers: ``earshot serve`` processes
with API keys, on the embedded (SQLite) backend and on a real, password-protected
``redis-server`` with ``maxmemory`` (no worker there: jobs stay queued, which is what
quotas count)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from conftest import ARTIFACTS, Clip
from earshot.auth import generate_key, hash_key
from earshot.jobs_client import JobError, JobsClient
from earshot.server_process import ServerProcess, free_port
from jobs_helpers import RedisServer, wait_until

ALICE, BOB, ROOT = generate_key(), generate_key(), generate_key()
SHORT = "jfk_inaugural"
LONG = "librivox_simplicissimus-de"  # 68 s: still running when the next upload comes
REDIS_PASSWORD = "tenants-test-redis-password"


def _keys_file(folder: Path, alice_quota: str) -> Path:
    keys = folder / "keys"
    keys.write_text(
        f"{hash_key(ALICE)} name=alice rpm=0 {alice_quota}\n"
        f"{BOB} name=bob rpm=0\n"
        f"{ROOT} name=root role=admin rpm=0\n"
    )
    return keys


def _refused(call: object, status: int) -> dict:
    with pytest.raises(JobError) as refused:
        call()  # type: ignore[operator]
    assert refused.value.status == status, refused.value.body
    body: dict = refused.value.body
    return body


def _environment_without_keys() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("EARSHOT_API_KEYS", "EARSHOT_API_KEYS_FILE", "EARSHOT_NO_AUTH")
    }


# -- protected mode ----------------------------------------------------------------------
def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "earshot", "serve", "--host", "0.0.0.0",
         "--port", str(free_port()), "--data-dir", str(tmp_path)],
        env=_environment_without_keys(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    for named in ("EARSHOT_API_KEYS", "--api-keys-file", "--no-auth"):
        assert named in result.stderr


def test_serve_on_a_public_address_without_keys_when_told_no_auth(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    server = ServerProcess(
        "--host", "0.0.0.0", "--data-dir", str(tmp_path),
        env={"EARSHOT_NO_AUTH": "1"},
        log_path=ARTIFACTS / "tenants-no-auth.log",
    )  # fmt: skip
    with server:
        assert httpx.get(f"{server.http_url}/v1/jobs/job_nope").status_code == 404  # open
    assert "WITHOUT API KEYS" in (ARTIFACTS / "tenants-no-auth.log").read_text()


# -- tenants on the embedded backend ---------------------------------------------------------
@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("tenants-sqlite")
    ARTIFACTS.mkdir(exist_ok=True)
    # Keys make a public address fine; the engine is slowed so a long job stays running.
    with ServerProcess(
        "--host", "0.0.0.0", "--api-keys-file", str(_keys_file(folder, "jobs=1")),
        "--data-dir", str(folder / "data"),
        env={"EARSHOT_FAULT_INJECT": "delay_ms=300"},
        log_path=ARTIFACTS / "tenants-sqlite.log",
    ) as server:  # fmt: skip
        yield server


def _clients(server: ServerProcess) -> tuple[JobsClient, JobsClient, JobsClient]:
    return (
        JobsClient(server.http_url, api_key=ALICE),
        JobsClient(server.http_url, api_key=BOB),
        JobsClient(server.http_url, api_key=ROOT),
    )


def test_a_key_cannot_see_or_delete_another_keys_job_sqlite(
    sqlite_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    alice, bob, root = _clients(sqlite_server)
    with alice, bob, root:
        job_id = alice.submit(speech[SHORT].path)
        assert alice.status(job_id)["owner"] == "alice"
        assert _refused(lambda: bob.status(job_id), 404)["error"] == "not_found"
        assert _refused(lambda: bob.result(job_id), 404)["error"] == "not_found"  # not 409
        assert _refused(lambda: bob.cancel(job_id), 404)["error"] == "not_found"
        assert root.status(job_id)["owner"] == "alice"  # an admin key sees every job
        done = wait_until(alice, job_id, timeout=120, poll=0.2)
        assert done["status"] == "done", done
        _refused(lambda: bob.result(job_id, "text"), 404)
        assert root.result(job_id, "text") == alice.result(job_id, "text")
        _refused(lambda: bob.cancel(job_id), 404)
        assert alice.status(job_id)["status"] == "done"  # bob's delete did nothing
        assert alice.cancel(job_id) == "deleted"


def test_a_keys_outstanding_jobs_are_capped_sqlite(
    sqlite_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    alice, bob, root = _clients(sqlite_server)
    with alice, bob, root:
        first = alice.submit(speech[LONG].path)
        body = _refused(lambda: alice.submit(speech[SHORT].path), 429)  # jobs=1
        assert body["error"] == "job_quota_exceeded" and "1 jobs" in body["message"]
        others = bob.submit(speech[SHORT].path)  # other keys have their own quota
        assert alice.cancel(first) == "cancelled"  # an ended job no longer counts
        again = alice.submit(speech[SHORT].path)
        for client, job_id in ((bob, others), (alice, again)):
            assert wait_until(client, job_id, timeout=180, poll=0.2)["status"] == "done"


# -- tenants, quotas and a full Redis on the distributed backend ------------------------------
@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path_factory.mktemp("tenants-redis"),
        "--maxmemory", "64mb", "--maxmemory-policy", "noeviction",
        password=REDIS_PASSWORD,
    )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_api(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("tenants-redis-api")
    ARTIFACTS.mkdir(exist_ok=True)
    # The URL carries no password: the server takes it from EARSHOT_REDIS_PASSWORD.
    with ServerProcess(
        "--jobs", f"{redis_server.url}/0", "--data-dir", str(folder / "data"),
        "--api-keys-file", str(_keys_file(folder, "jobs=2")), "--job-audio-ttl", "300",
        env={"EARSHOT_REDIS_PASSWORD": REDIS_PASSWORD},
        log_path=ARTIFACTS / "tenants-redis.log",
    ) as server:  # fmt: skip
        yield server


def test_tenants_and_quotas_on_redis(
    redis_api: ServerProcess, redis_server: RedisServer, speech: dict[str, Clip]
) -> None:
    store = redis_server.client(0)
    alice, bob, root = _clients(redis_api)
    with alice, bob, root:
        first = alice.submit(speech[SHORT].path)
        _refused(lambda: bob.status(first), 404)
        _refused(lambda: bob.result(first), 404)
        _refused(lambda: bob.cancel(first), 404)
        assert root.status(first)["owner"] == "alice"
        assert _refused(lambda: alice.result(first), 409)["error"] == "not_done"  # her own
        assert 0 < store.ttl(f"earshot:audio:{first}") <= 300  # the audio expires

        second = alice.submit(speech[SHORT].path)
        body = _refused(lambda: alice.submit(speech[SHORT].path), 429)  # jobs=2, no worker
        assert body["error"] == "job_quota_exceeded"
        bob.submit(speech[SHORT].path)
        assert root.cancel(second) == "cancelled"  # an admin may cancel anyone's job
        alice.submit(speech[SHORT].path)  # room again
        assert store.exists(f"earshot:job:{first}") and not store.exists(f"earshot:audio:{second}")


def test_a_full_redis_answers_503_and_recovers(
    redis_api: ServerProcess, redis_server: RedisServer, speech: dict[str, Clip]
) -> None:
    store = redis_server.client(0)
    filler = [f"filler:{i}" for i in range(100)]
    written = []
    try:
        for key in filler:  # up to maxmemory, where Redis refuses writes (noeviction)
            try:
                store.set(key, b"\0" * (1 << 20))
            except redis.exceptions.OutOfMemoryError:
                break
            written.append(key)
        else:
            pytest.fail("Redis took 100 MiB: maxmemory not in force")
        store.delete(*written[-2:])  # a little room, not enough for an upload and reserve
        with JobsClient(redis_api.http_url, api_key=BOB) as bob:
            response = httpx.post(
                f"{redis_api.http_url}/v1/jobs",
                files={"file": ("a.wav", speech[SHORT].path.read_bytes())},
                headers={"Authorization": f"Bearer {BOB}"},
                timeout=60,
            )
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "store_full"
            assert response.headers["Retry-After"]
            store.delete(*written)
            written.clear()
            assert bob.status(bob.submit(speech[SHORT].path))["status"] == "queued"
    finally:
        if written:
            store.delete(*written)
