"""Tenants, job quotas, protected mode and the Redis store's limits, as units: the pure
rules, the SQLite store on a temporary folder and the Redis store on a real, private
``redis-server`` (no Earshot server here; see test_tenants.py for those)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from earshot.access import Principal, protected_mode_refusal
from earshot.auth import generate_key, parse_keys
from earshot.cli import build_parser
from earshot.jobs.celery_backend import make_celery
from earshot.jobs.config import JobsConfig
from earshot.jobs.models import Job, JobOptions, JobQuota, QuotaExceeded, StoreFull
from earshot.jobs.redis_store import RedisJobStore, redis_url
from earshot.jobs.sqlite_store import SqliteJobStore
from earshot.limits import MIB, KeyLimits
from earshot.security_options import security_config, startup_refusal
from jobs_helpers import RedisServer

DEFAULTS = KeyLimits()


# -- keys: roles and job quotas -----------------------------------------------------------
def test_keys_take_a_role_and_job_quotas() -> None:
    user, admin, plain = parse_keys(
        [
            f"{generate_key()} name=u jobs=3 jobs_mb=50",
            f"{generate_key()} name=root role=admin jobs=0",
            f"{generate_key()} name=p",
        ],
        DEFAULTS,
    )
    assert (user.role, user.admin, admin.role, admin.admin) == ("user", False, "admin", True)
    assert (user.limits.max_jobs, user.limits.max_job_bytes) == (3, 50 * MIB)
    assert admin.limits.max_jobs is None  # 0: no limit
    assert (plain.limits.max_jobs, plain.limits.max_job_bytes) == (20, 500 * MIB)
    with pytest.raises(ValueError, match="role"):
        parse_keys([f"{generate_key()} role=root"], DEFAULTS)


def test_a_key_sees_its_own_jobs_an_admin_all_and_open_access_all() -> None:
    alice, root = parse_keys(
        [f"{generate_key()} name=alice", f"{generate_key()} name=root role=admin"], DEFAULTS
    )
    as_alice, as_root = Principal(alice, alice.limits), Principal(root, root.limits)
    assert as_alice.owns("alice")
    assert not as_alice.owns("bob") and not as_alice.owns(None)
    assert as_root.owns("bob") and as_root.owns(None)
    assert Principal(None, DEFAULTS).owns("bob")  # no keys configured: no tenants


def test_job_quota_counts_jobs_and_bytes() -> None:
    JobQuota(2, 100).check(jobs=1, size=50, new_size=50)
    with pytest.raises(QuotaExceeded, match="2 jobs queued or running"):
        JobQuota(2, None).check(jobs=2, size=0, new_size=1)
    with pytest.raises(QuotaExceeded, match="limit of 100 bytes"):
        JobQuota(None, 100).check(jobs=0, size=60, new_size=41)
    JobQuota(None, None).check(jobs=10**6, size=10**12, new_size=10**9)


# -- protected mode ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "keys", "no_auth", "refused"),
    [
        ("127.0.0.1", False, False, False),
        ("::1", False, False, False),
        ("localhost", False, False, False),
        ("0.0.0.0", True, False, False),
        ("0.0.0.0", False, True, False),
        ("0.0.0.0", False, False, True),
        ("::", False, False, True),
        ("stt.example.com", False, False, True),
    ],
)
def test_protected_mode_refuses_a_public_bind_without_keys_unless_told(
    host: str, keys: bool, no_auth: bool, refused: bool
) -> None:
    reason = protected_mode_refusal(host, keys, no_auth)
    assert (reason is not None) is refused
    if reason:
        for named in ("EARSHOT_API_KEYS", "--api-keys-file", "--no-auth", "EARSHOT_NO_AUTH"):
            assert named in reason


def test_protected_mode_reads_no_auth_and_counts_real_keys_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refusal(*argv: str) -> str | None:
        args = build_parser().parse_args(["serve", *argv])
        return startup_refusal(args, security_config(args))

    comments = tmp_path / "keys"
    comments.write_text("# no keys yet\n\n")
    assert refusal("--host", "0.0.0.0", "--api-keys-file", str(comments))
    assert refusal("--host", "0.0.0.0", "--no-auth") is None
    monkeypatch.setenv("EARSHOT_API_KEYS", generate_key())
    assert refusal("--host", "0.0.0.0") is None
    monkeypatch.delenv("EARSHOT_API_KEYS")
    monkeypatch.setenv("EARSHOT_NO_AUTH", "1")
    assert refusal("--host", "0.0.0.0") is None


def test_token_secret_comes_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-mounted-secret-0123456789\n")
    args = build_parser().parse_args(["serve", "--token-secret-file", str(secret)])
    assert security_config(args).token_secret == "from-a-mounted-secret-0123456789"


# -- Redis password --------------------------------------------------------------------------
def test_redis_password_goes_into_the_url_unless_it_has_one(tmp_path: Path) -> None:
    url = "redis://earshot-redis:6379/0"
    assert redis_url(url, {}) == url
    assert redis_url(url, {"EARSHOT_REDIS_PASSWORD": "p@ss/w:rd"}) == (
        "redis://:p%40ss%2Fw%3Ard@earshot-redis:6379/0"
    )
    assert redis_url("redis://:mine@h:6379/0", {"EARSHOT_REDIS_PASSWORD": "x"}) == (
        "redis://:mine@h:6379/0"
    )
    assert redis_url("rediss://u@h/1", {"EARSHOT_REDIS_PASSWORD": "x"}) == "rediss://u:x@h/1"
    secret = tmp_path / "redis-password"
    secret.write_text("from-file\n")
    assert redis_url(url, {"EARSHOT_REDIS_PASSWORD_FILE": str(secret)}) == (
        "redis://:from-file@earshot-redis:6379/0"
    )


def test_celery_uses_the_redis_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARSHOT_REDIS_PASSWORD", "s3cret")
    app = make_celery(JobsConfig(backend="redis://earshot-redis:6379/0"))
    assert app.conf.broker_url == "redis://:s3cret@earshot-redis:6379/0"
    assert app.conf.result_backend == "redis://:s3cret@earshot-redis:6379/0"


# -- the stores enforce quotas atomically -----------------------------------------------------
def _job(owner: str | None, size: int) -> Job:
    from earshot.jobs.models import new_job_id

    return Job(new_job_id(), JobOptions(), "a.wav", size, created_at=1.0, owner=owner)


def _upload(folder: Path, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.part"
    path.write_bytes(b"\0" * size)
    return path


def test_sqlite_store_counts_only_the_owners_active_jobs(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path)
    quota = JobQuota(max_jobs=2, max_bytes=1000)
    try:
        first, second = _job("alice", 400), _job("alice", 400)
        store.create(first, _upload(store.upload_dir, 400), quota)
        store.create(second, _upload(store.upload_dir, 400), quota)
        store.create(_job("bob", 400), _upload(store.upload_dir, 400), quota)  # own quota
        refused = _upload(store.upload_dir, 10)
        with pytest.raises(QuotaExceeded):
            store.create(_job("alice", 10), refused, quota)
        assert refused.exists()  # left to the upload's owner to delete
        # An ended job no longer counts; bytes still do.
        store.update(first.id, lambda j: j.cancelled(2.0, 60))
        with pytest.raises(QuotaExceeded, match="bytes"):
            store.create(_job("alice", 700), _upload(store.upload_dir, 700), quota)
        store.create(_job("alice", 600), _upload(store.upload_dir, 600), quota)
    finally:
        store.close()


@pytest.fixture(scope="module")
def small_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path_factory.mktemp("redis-units"),
        "--maxmemory", "24mb", "--maxmemory-policy", "noeviction",
        password="unit-test-password",
    )  # fmt: skip
    yield server
    server.stop()


def _redis_store(server: RedisServer, db: int, monkeypatch: pytest.MonkeyPatch) -> RedisJobStore:
    monkeypatch.setenv("EARSHOT_REDIS_PASSWORD", "unit-test-password")
    server.client(db).flushdb()
    return RedisJobStore(f"{server.url}/{db}", audio_ttl_s=600)


def test_redis_store_needs_the_password(small_redis: RedisServer) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(small_redis.url).ping()


def test_redis_store_quota_is_atomic_per_owner_and_audio_expires(
    small_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _redis_store(small_redis, 1, monkeypatch)
    direct = small_redis.client(1)
    quota = JobQuota(max_jobs=3, max_bytes=None)
    try:
        # Eight uploads of one key at once: exactly three get in.
        outcomes: list[str] = []

        def submit() -> None:
            try:
                store.create(_job("alice", 100), _upload(tmp_path, 100), quota)
                outcomes.append("ok")
            except QuotaExceeded:
                outcomes.append("quota")

        threads = [threading.Thread(target=submit) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["ok"] * 3 + ["quota"] * 5
        ids = [k.decode().split(":")[-1] for k in direct.keys("earshot:job:*")]
        assert len(ids) == 3
        for job_id in ids:
            assert 0 < direct.ttl(f"earshot:audio:{job_id}") <= 600  # audio expires
            assert direct.ttl(f"earshot:job:{job_id}") == -1  # an active job does not
        # Ending, deleting or losing (expired key) a job frees its slot.
        store.update(ids[0], lambda j: j.cancelled(2.0, 60))
        store.delete(ids[1])
        direct.delete(f"earshot:job:{ids[2]}")
        for _ in range(3):
            store.create(_job("alice", 100), _upload(tmp_path, 100), quota)
        with pytest.raises(QuotaExceeded):
            store.create(_job("alice", 100), _upload(tmp_path, 100), quota)
        assert direct.hlen("earshot:owner:alice") == 3  # ended ones pruned
    finally:
        store.close()


def test_redis_store_refuses_uploads_when_redis_is_nearly_full(
    small_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _redis_store(small_redis, 2, monkeypatch)
    direct = small_redis.client(2)
    try:
        store.create(_job(None, 1 * MIB), _upload(tmp_path, 1 * MIB))  # fits
        upload = _upload(tmp_path, 8 * MIB)
        with pytest.raises(StoreFull, match="full"):
            store.create(_job(None, 8 * MIB), upload)  # 2 x 8 MiB + 8 MiB reserve > 24 MiB
        assert upload.exists()

        # Past the room check, Redis' own OOM answer is the same refusal.
        monkeypatch.setattr(store, "_check_room", lambda size: None)
        with pytest.raises(StoreFull, match="maxmemory"):
            store.create(_job(None, 30 * MIB), _upload(tmp_path, 30 * MIB))
        assert len(direct.keys("earshot:job:*")) == 1
    finally:
        direct.flushdb()
        store.close()


def test_a_full_job_queue_is_store_full(tmp_path: Path) -> None:
    import asyncio

    from earshot.jobs.celery_backend import CeleryDispatcher

    server = RedisServer(tmp_path, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    try:
        dispatcher = CeleryDispatcher(JobsConfig(backend=f"{server.url}/0"))
        job = _job(None, 1)
        asyncio.run(dispatcher.dispatch(job))  # room: queued
        client = server.client()
        with pytest.raises(redis.exceptions.OutOfMemoryError):  # fill it up
            for i in range(1_000_000):
                client.set(f"filler:{i}", b"\0" * 256)
        with pytest.raises(StoreFull, match="queue is full"):
            asyncio.run(dispatcher.dispatch(job))
        dispatcher.app.close()
    finally:
        server.stop()
