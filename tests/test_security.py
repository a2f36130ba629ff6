"""API keys, tokens (expiry, forgery, revocation), per-key limits, the Origin check, CORS
and body limits: units first, then the same rules on a real server with keys."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.waiting import async_poll_until
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from earshot.access import AccessPolicy, Denied, OriginPolicy, exposure_warning
from earshot.auth import (
    AuthError,
    KeyStore,
    TokenSigner,
    generate_key,
    hash_key,
    parse_keys,
)
from earshot.client import Ready, connect
from earshot.limits import KeyLimits, LimitTracker, TokenBucket
from earshot.server_process import ServerProcess

DEFAULTS = KeyLimits(max_streams=4, requests_per_minute=60, max_upload_bytes=1 << 20)


# -- keys ---------------------------------------------------------------------------------
def test_keys_are_kept_only_as_hashes_and_found_by_comparing_every_digest() -> None:
    alice, bob = generate_key(), generate_key()
    keys = parse_keys([f"{alice} name=alice streams=2", hash_key(bob), "# comment", ""], DEFAULTS)
    store = KeyStore(keys)
    assert [k.key_id for k in keys] == ["alice", "key-2"]
    assert keys[0].digest == hashlib.sha256(alice.encode()).digest()
    assert alice not in repr(keys) and alice.encode() not in keys[0].digest
    assert store.lookup(alice) is keys[0] and store.lookup(bob) is keys[1]
    assert store.lookup(alice + "x") is None and store.lookup("") is None
    assert keys[0].limits.max_streams == 2 and keys[1].limits == DEFAULTS


@pytest.mark.parametrize(
    "entry",
    ["short", "sha256:abc", "sha256:" + "g" * 64, f"{'k' * 20} colour=red", f"{'k' * 20} rpm=x"],
)
def test_bad_key_entries_are_refused_at_startup(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_keys([entry], DEFAULTS)


def test_per_key_limits_of_zero_mean_unlimited() -> None:
    (key,) = parse_keys([f"{generate_key()} streams=0 rpm=0 upload_mb=0"], DEFAULTS)
    assert key.limits == KeyLimits(None, None, None)


@given(st.lists(st.text(max_size=80), max_size=5))
def test_key_parser_takes_any_text_without_crashing(lines: list[str]) -> None:
    with contextlib.suppress(ValueError):
        parse_keys(lines, DEFAULTS)


# -- tokens -------------------------------------------------------------------------------
@pytest.fixture
def store() -> KeyStore:
    return KeyStore(parse_keys([f"{generate_key()} name=alice"], DEFAULTS))


def test_a_token_verifies_until_it_expires(store: KeyStore) -> None:
    signer = TokenSigner(b"s" * 32)
    alice = store.get("alice")
    assert alice is not None
    token, expires = signer.mint(alice, 60, now=1000.0)
    assert expires == 1060
    assert signer.verify(token, store, now=1059.0) is alice
    with pytest.raises(AuthError, match="expired"):
        signer.verify(token, store, now=1060.0)


def test_token_lifetime_is_capped(store: KeyStore) -> None:
    signer = TokenSigner(b"s" * 32, max_ttl_s=600)
    alice = store.get("alice")
    assert alice is not None
    assert signer.mint(alice, 10**9, now=0.0)[1] == 600


def _tamper(token: str, kid: str) -> str:
    prefix, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["kid"] = kid
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{prefix}.{forged}.{signature}"


def test_forged_tampered_or_foreign_tokens_are_refused(store: KeyStore) -> None:
    signer = TokenSigner(b"s" * 32)
    alice = store.get("alice")
    assert alice is not None
    token, _ = signer.mint(alice, 60, now=0.0)
    for bad in (
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # signature changed
        _tamper(token, "mallory"),  # payload changed, signature kept
        TokenSigner(b"t" * 32).mint(alice, 60, now=0.0)[0],  # another server's secret
        "et1.e30.",
        "et1.!!!.???",
        "not-a-token",
    ):
        with pytest.raises(AuthError):
            signer.verify(bad, store, now=1.0)


def test_a_token_dies_with_its_key(store: KeyStore) -> None:
    signer = TokenSigner(b"s" * 32)
    alice = store.get("alice")
    assert alice is not None
    token, _ = signer.mint(alice, 60, now=0.0)
    # The key is replaced by another one under the same name: old tokens stop working.
    replaced = KeyStore(parse_keys([f"{generate_key()} name=alice"], DEFAULTS))
    with pytest.raises(AuthError, match="revoked"):
        signer.verify(token, replaced, now=1.0)
    with pytest.raises(AuthError, match="revoked"):
        signer.verify(token, KeyStore(), now=1.0)


@given(st.text(max_size=300))
def test_token_verification_of_garbage_only_ever_says_no(text: str) -> None:
    keys = KeyStore(parse_keys([f"{'k' * 32} name=alice"], DEFAULTS))
    for candidate in (text, "et1." + text, "et1." + text + "." + text):
        with pytest.raises(AuthError):
            TokenSigner(b"s" * 32).verify(candidate, keys, now=0.0)


def test_policy_takes_keys_from_headers_and_tokens_only_from_urls() -> None:
    key = generate_key()
    policy = AccessPolicy(KeyStore(parse_keys([f"{key} name=alice"], DEFAULTS)))
    assert policy.authenticate(f"Bearer {key}").key_id == "alice"
    token, _, _ = policy.mint(policy.authenticate(f"Bearer {key}"), 60)
    assert policy.authenticate(None, token).via_token
    for header, query in ((None, None), ("Bearer nope", None), ("Basic abc", None), (None, key)):
        with pytest.raises(Denied) as refused:
            policy.authenticate(header, query)
        assert refused.value.status == 401
    assert AccessPolicy().authenticate(None).key is None  # no keys: open access


# -- limits -------------------------------------------------------------------------------
def test_token_bucket_bursts_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(capacity=3, rate=1.0, now=0.0)
    assert [bucket.try_take(1, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_take(1, 0.0) == pytest.approx(1.0)
    assert bucket.try_take(1, 1.0) == 0.0
    assert bucket.available_in(3, 1.0) == pytest.approx(3.0)  # peeks, takes nothing
    assert bucket.try_take(3, 4.0) == 0.0


def test_limit_tracker_counts_streams_and_requests_per_key() -> None:
    tracker = LimitTracker()
    limits = KeyLimits(max_streams=2, requests_per_minute=2)
    assert tracker.open_stream("a", limits) and tracker.open_stream("a", limits)
    assert not tracker.open_stream("a", limits) and tracker.open_stream("b", limits)
    tracker.close_stream("a")
    assert tracker.open_stream("a", limits)
    assert tracker.admit_request("a", limits, 0.0) == 0.0
    assert tracker.admit_request("a", limits, 0.0) == 0.0
    assert tracker.admit_request("a", limits, 0.0) == pytest.approx(30.0)


# -- origins ------------------------------------------------------------------------------
def test_default_origin_policy_allows_non_browsers_same_origin_and_loopback_pages() -> None:
    policy = OriginPolicy(None)
    assert policy.allows(None, "stt.example.com")
    assert policy.allows("https://stt.example.com", "stt.example.com")
    assert policy.allows("http://stt.example.com:8000", "stt.example.com:8000")
    assert policy.allows("http://localhost:5173", "stt.example.com")
    assert policy.allows("http://127.0.0.1:3000", "stt.example.com")
    assert not policy.allows("https://evil.example", "stt.example.com")
    assert not policy.allows("https://stt.example.com.evil.example", "stt.example.com")
    assert not policy.allows("http://stt.example.com", "stt.example.com:8000")
    assert not policy.allows("null", "stt.example.com")
    assert not policy.allows("garbage", "stt.example.com")


def test_an_origin_allowlist_replaces_the_loopback_default() -> None:
    policy = OriginPolicy(("https://app.example.com",))
    assert policy.allows("https://APP.example.com", "stt.example.com")
    assert policy.allows("https://app.example.com:443", "stt.example.com")
    assert not policy.allows("http://localhost:5173", "stt.example.com")
    assert OriginPolicy(("*",)).allows("https://anything.example", "x")


def test_public_bind_without_keys_warns() -> None:
    assert exposure_warning("127.0.0.1", False) is None
    assert exposure_warning("::1", False) is None
    assert exposure_warning("0.0.0.0", True) is None
    assert "WITHOUT API KEYS" in (exposure_warning("0.0.0.0", False) or "")


# -- on a real server ---------------------------------------------------------------------
ALICE, BOB, CAROL = generate_key(), generate_key(), generate_key()
APP = "https://app.example.com"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(
        f"# name and limits per key\n{hash_key(ALICE)} name=alice streams=1\n"
        f"{BOB} name=bob\n{CAROL} name=carol rpm=4 upload_mb=1\n"
    )
    env = {"EARSHOT_TOKEN_SECRET": "a-shared-secret-for-all-replicas-0123456789"}
    with ServerProcess(
        "--api-keys-file", str(keys), "--allowed-origins", APP, "--idle-timeout", "5",
        env=env, log_path=Path("artifacts/security-server.log"),
    ) as server:  # fmt: skip
        yield server


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _refused(url: str, **kwargs: object) -> tuple[int, dict[str, str]]:
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def _ready(url: str, **kwargs: object) -> Ready:
    async with connect(url, **kwargs) as stream:  # type: ignore[arg-type]
        assert stream.ready is not None
        return stream.ready


async def _refusal(url: str, **kwargs: object) -> tuple[int, dict[str, str]] | None:
    """How the server refuses this handshake, or None when it accepts it."""
    try:
        async with ws_connect(url, **kwargs):  # type: ignore[arg-type]
            return None
    except InvalidStatus as refused:
        return refused.response.status_code, json.loads(refused.response.body or b"{}")


async def _ready_unless_refused(url: str, status: int, **kwargs: object) -> Ready | None:
    """``_ready``, or None when the server refuses the handshake with ``status``."""
    try:
        return await _ready(url, **kwargs)
    except InvalidStatus as refused:
        if refused.response.status_code != status:
            raise
        return None


@pytest.mark.asyncio
async def test_streams_need_a_valid_key_or_token(secured: ServerProcess) -> None:
    url = secured.ws_url
    assert (await _refused(url))[0] == 401
    status, body = await _refused(url, additional_headers=_bearer(generate_key()))
    assert (status, body["error"]) == (401, "unauthorized")
    # A key in the URL is refused (it would end up in access logs).
    assert (await _refused(f"{url}?token={BOB}"))[0] == 401
    assert (await _ready(url, api_key=BOB)).model
    assert (await _ready(url, api_key=ALICE)).model  # stored as a hash


@pytest.mark.asyncio
async def test_browser_flow_token_then_stream_and_tokens_expire(secured: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=secured.http_url) as http:
        minted = await http.post("/v1/auth/token", headers=_bearer(BOB), json={"ttl_s": 2})
        assert minted.status_code == 200 and minted.headers["cache-control"] == "no-store"
        token = minted.json()["token"]
        assert minted.json()["key_id"] == "bob" and 1 <= minted.json()["expires_in"] <= 2
        assert (await _ready(secured.ws_url, token=token)).model
        # A token can't mint more tokens, and tampering breaks it.
        again = await http.post("/v1/auth/token", headers=_bearer(token))
        assert again.status_code == 403
        forged = _tamper(token, "alice")
        assert (await _refused(f"{secured.ws_url}?token={forged}"))[0] == 401
        assert (await http.post("/v1/auth/token", headers=_bearer("nope"))).status_code == 401
        garbage = await http.post("/v1/auth/token", headers=_bearer(BOB), content=b"{nan")
        assert garbage.status_code == 400 and "Traceback" not in garbage.text
    refusal = await async_poll_until(
        lambda: _refusal(f"{secured.ws_url}?token={token}"),
        timeout=10,
        interval=0.25,
        what="the 2 s token to expire",
    )
    status, body = refusal
    assert status == 401 and "expired" in body["message"]


@pytest.mark.asyncio
async def test_cross_site_pages_cannot_open_streams(secured: ServerProcess) -> None:
    status, body = await _refused(
        secured.ws_url, origin="https://evil.example", additional_headers=_bearer(BOB)
    )
    assert (status, body["error"]) == (403, "origin_not_allowed")
    assert (await _refused(secured.ws_url, origin="null", additional_headers=_bearer(BOB)))[
        0
    ] == 403
    async with ws_connect(secured.ws_url, origin=APP, additional_headers=_bearer(BOB)) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"


@pytest.mark.asyncio
async def test_a_key_gets_at_most_its_concurrent_streams(secured: ServerProcess) -> None:
    async with connect(secured.ws_url, api_key=ALICE) as first:
        assert first.ready is not None
        status, body = await _refused(secured.ws_url, additional_headers=_bearer(ALICE))
        assert (status, body["error"]) == (429, "too_many_streams")
        assert (await _ready(secured.ws_url, api_key=BOB)).model  # other keys unaffected
    # Once the server has seen the close, alice's slot is free again.
    ready = await async_poll_until(
        lambda: _ready_unless_refused(secured.ws_url, 429, api_key=ALICE),
        what="alice's stream slot to be freed",
    )
    assert ready.model


def test_http_api_needs_a_key_but_probes_do_not(secured: ServerProcess) -> None:
    with httpx.Client(base_url=secured.http_url) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        refused = http.get("/v1/jobs/nothing")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert http.get("/v1/jobs/nothing", headers=_bearer(BOB)).status_code == 404


def test_cors_preflight_answers_only_allowed_origins(secured: ServerProcess) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    with httpx.Client(base_url=secured.http_url) as http:
        ok = http.options("/v1/auth/token", headers={"Origin": APP, **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP
        evil = http.options(
            "/v1/auth/token", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in evil.headers


def test_rate_limit_and_body_limit_per_key(secured: ServerProcess) -> None:
    with httpx.Client(base_url=secured.http_url) as http:
        # carol: upload_mb=1. Refused from Content-Length, and while a chunked body streams.
        big = http.post("/v1/jobs", headers=_bearer(CAROL), content=b"x" * (3 << 20))
        assert big.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: only counting can stop it
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            for _ in range(48):
                yield b"x" * (64 << 10)

        form = {"Content-Type": "multipart/form-data; boundary=b", **_bearer(CAROL)}
        streamed = http.post("/v1/jobs", headers=form, content=chunks())
        assert streamed.status_code == 413  # the jobs API applies the key's limit itself
        assert streamed.json()["error"] == "file_too_large"
        # carol: rpm=4 (the two uploads above counted).
        statuses = [http.get("/v1/jobs/x", headers=_bearer(CAROL)).status_code for _ in range(4)]
        assert statuses[:2] == [404, 404] and statuses[-1] == 429
        limited = http.get("/v1/jobs/x", headers=_bearer(CAROL))
        assert (
            limited.json()["error"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
        )
        assert http.get("/v1/jobs/x", headers=_bearer(BOB)).status_code == 404


def test_keygen_prints_a_key_and_the_line_that_admits_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from earshot.cli import main

    assert main(["keygen", "--name", "ci"]) == 0
    key_line, entry_line = capsys.readouterr().out.splitlines()
    key = key_line.rsplit(" ", 1)[1]
    entry = entry_line.split(":", 1)[1].strip()
    (parsed,) = parse_keys([entry], DEFAULTS)
    assert parsed.key_id == "ci" and KeyStore([parsed]).lookup(key) is parsed
    assert key not in entry


@pytest.mark.parametrize("keys", ["missing", "short-key name=x"])
def test_serve_refuses_to_start_with_unreadable_or_bad_keys(keys: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "keys"
    if keys != "missing":
        path.write_text(keys + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "earshot", "serve", "--api-keys-file", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "API keys" in done.stderr
