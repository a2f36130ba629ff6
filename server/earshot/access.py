"""Who may use the server, from where, and how much: the web side of auth.py/limits.py.

- WebSocket handshakes (``AccessPolicy.admit_websocket``): Origin allowlist (403, against
  cross-site WebSocket hijacking), credentials (401), per-key request rate and
  concurrent streams (429). Every refusal is an HTTP response before any WebSocket is
  opened (PROTOCOL.md), with a JSON body ``{"error", "message"}``.
- HTTP (``AccessMiddleware``): credentials and the request rate on ``/v1/...``; a body
  size cap on every request (413), counted as the body streams in, not trusted from
  ``Content-Length``. Routes read the caller with ``principal_of(request)`` and its
  upload cap with ``upload_limit(request)``.
- ``POST /v1/auth/token`` (``token_endpoint``): a short-lived token for browsers.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from earshot.auth import TOKEN_PREFIX, ApiKey, AuthError, KeyStore, TokenSigner, parse_keys
from earshot.config import SecurityConfig
from earshot.limits import UNLIMITED, KeyLimits, LimitTracker

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/v1/"
"""HTTP paths that need credentials when keys are configured (health, readiness and
metrics stay open for probes and scrapers)."""
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
TOKEN_BODY_BYTES = 4096
FORM_SLACK = 1024 * 1024
"""A body may exceed the upload cap by this much (multipart headers, small fields), so an
upload route's own, tighter check answers first with its own message."""


class Denied(Exception):
    """A refusal with its HTTP status; ``message`` is safe to show the client."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.code, "message": self.message}, self.status, headers=self.headers
        )


@dataclass(frozen=True)
class Principal:
    """The caller of one request or stream."""

    key: ApiKey | None
    """None: open access (no keys configured)."""
    limits: KeyLimits
    via_token: bool = False

    @property
    def key_id(self) -> str:
        return self.key.key_id if self.key else "anonymous"

    @property
    def sees_all_jobs(self) -> bool:
        """An admin key, or open access (no keys: no tenants either)."""
        return self.key is None or self.key.admin

    def owns(self, owner: str | None) -> bool:
        """May this caller see (and delete) a job created by key ``owner``? Jobs of other
        keys answer 404, as if they did not exist (nothing to learn from their ids)."""
        return self.sees_all_jobs or owner == self.key_id


class OriginPolicy:
    """Which browser pages may open a WebSocket. Browsers always send ``Origin`` on a
    WebSocket handshake and a page can't forge it, so this stops another site from
    using a visitor's browser (and network position) to reach the server."""

    def __init__(self, allowed: tuple[str, ...] | None) -> None:
        self.any = allowed is not None and "*" in allowed
        self.allowed = None if allowed is None else {_origin_key(o) for o in allowed if o != "*"}

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not a browser: nothing to hijack
        if self.any:
            return True
        key = _origin_key(origin)
        if key is None:
            return False  # "null" (sandboxed frames, file://) or garbage
        if host and key[1:] == _host_key(host, key[0]):
            return True  # same origin: a page the server itself serves
        if self.allowed is None:
            return _is_loopback(key[1])
        return key in self.allowed


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def _host_key(host: str, scheme: str) -> tuple[str, int] | None:
    key = _origin_key(f"{scheme}://{host}")
    return None if key is None else key[1:]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


NO_AUTH_HINT = (
    "Set API keys (EARSHOT_API_KEYS or --api-keys-file; make them with `earshot keygen`),"
    " or pass --no-auth (EARSHOT_NO_AUTH=1) to serve without them on purpose."
)


def protected_mode_refusal(host: str, keys_enabled: bool, no_auth: bool) -> str | None:
    """Protected mode, as Redis has it: why ``earshot serve`` refuses to start (exit 2),
    or None. It refuses to listen beyond loopback with no API keys configured, since
    every route would be open to whoever reaches the address, unless ``no_auth`` says
    that is meant (a private network, auth done by a proxy in front)."""
    if keys_enabled or no_auth or _is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without API keys: anyone who can reach it could"
        f" use every route. {NO_AUTH_HINT}"
    )


def exposure_warning(host: str, keys_enabled: bool) -> str | None:
    """The warning ``earshot serve`` prints when it listens beyond loopback with no keys."""
    if keys_enabled or _is_loopback(host):
        return None
    return (
        f"earshot is listening on {host} WITHOUT API KEYS: anyone who can reach this"
        " address can use it. Set --api-keys-file or EARSHOT_API_KEYS (see `earshot keygen`)."
    )


@dataclass
class StreamSlot:
    """One of a key's concurrent stream slots, held for the life of a stream."""

    principal: Principal
    _release: Callable[[], None] | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class AccessPolicy:
    def __init__(
        self,
        keys: KeyStore | None = None,
        signer: TokenSigner | None = None,
        *,
        origins: OriginPolicy | None = None,
        token_ttl_s: float = 300.0,
        max_body_bytes: int = SecurityConfig.max_body_bytes,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys or KeyStore()
        self.signer = signer or TokenSigner()
        self.origins = origins or OriginPolicy(None)
        self.token_ttl_s = token_ttl_s
        self.anonymous = Principal(None, _anonymous_limits(max_body_bytes))
        self.limits = LimitTracker()
        self._wall_clock = wall_clock
        self._monotonic = monotonic

    @classmethod
    def from_config(cls, config: SecurityConfig) -> AccessPolicy:
        secret = config.token_secret.encode() if config.token_secret else None
        return cls(
            KeyStore(parse_keys(config.api_keys, config.key_limits)),
            TokenSigner(secret),
            origins=OriginPolicy(config.allowed_origins),
            token_ttl_s=config.token_ttl_s,
            max_body_bytes=config.max_body_bytes,
        )

    # -- credentials ----------------------------------------------------------------------
    def authenticate(self, authorization: str | None, query_token: str | None = None) -> Principal:
        """``Authorization: Bearer <key or token>``, else ``?token=``; ``Denied`` (401) when
        keys are configured and neither is valid. API keys are never taken from URLs."""
        if not self.keys.enabled:
            return self.anonymous
        credential = _bearer(authorization)
        if credential is None and query_token:
            if not query_token.startswith(TOKEN_PREFIX):
                raise _unauthorized("?token= takes a token from POST /v1/auth/token, not a key")
            credential = query_token
        if credential is None:
            raise _unauthorized("missing credentials: Authorization: Bearer <api key>")
        try:
            if credential.startswith(TOKEN_PREFIX):
                key = self.signer.verify(credential, self.keys, self._wall_clock())
                return Principal(key, key.limits, via_token=True)
            found = self.keys.lookup(credential)
        except AuthError as exc:
            raise _unauthorized(str(exc)) from None
        if found is None:
            raise _unauthorized("invalid API key")
        return Principal(found, found.limits)

    def mint(self, principal: Principal, ttl_s: float | None) -> tuple[str, int, int]:
        """A token for the caller's key: (token, expiry as Unix time, seconds left)."""
        key = principal.key or ApiKey("anonymous", b"", principal.limits)
        now = self._wall_clock()
        token, expires = self.signer.mint(key, ttl_s or self.token_ttl_s, now)
        return token, expires, max(0, round(expires - now))

    # -- limits ---------------------------------------------------------------------------
    def count_request(self, principal: Principal) -> None:
        """One request (or stream handshake) against the key's per-minute budget."""
        if principal.key is None:
            return
        wait = self.limits.admit_request(principal.key_id, principal.limits, self._monotonic())
        if wait > 0:
            raise Denied(
                429,
                "rate_limited",
                f"key {principal.key_id!r} is over {principal.limits.requests_per_minute}"
                " requests per minute",
                {"Retry-After": str(max(1, round(wait)))},
            )

    def open_stream(self, principal: Principal) -> StreamSlot:
        if principal.key is None:
            return StreamSlot(principal)
        key_id = principal.key_id
        if not self.limits.open_stream(key_id, principal.limits):
            raise Denied(
                429,
                "too_many_streams",
                f"key {key_id!r} already has {principal.limits.max_streams} open streams",
            )
        return StreamSlot(principal, lambda: self.limits.close_stream(key_id))

    # -- WebSocket handshake --------------------------------------------------------------
    async def admit_websocket(
        self,
        websocket: WebSocket,
        on_refusal: Callable[[str], None] | None = None,
        *,
        credentials: tuple[str | None, str | None] | None = None,
        deny: Callable[[Denied], Response] = Denied.response,
    ) -> StreamSlot | None:
        """Check a streaming handshake; on refusal send the HTTP denial (``deny`` gives
        its body: a dialect's own shape), tell ``on_refusal`` (metrics) its code and
        return None. ``credentials``: ``(authorization, query_token)`` as the dialect
        found them (default: the ``Authorization`` header and ``?token=``)."""
        try:
            if not self.origins.allows(
                websocket.headers.get("origin"), websocket.headers.get("host")
            ):
                raise Denied(403, "origin_not_allowed", "this page's origin may not connect")
            if credentials is None:
                credentials = (
                    websocket.headers.get("authorization"),
                    websocket.query_params.get("token"),
                )
            principal = self.authenticate(*credentials)
            self.count_request(principal)
            return self.open_stream(principal)
        except Denied as refusal:
            log.info("stream refused (%d %s)", refusal.status, refusal.code)
            if on_refusal is not None:
                on_refusal(refusal.code)
            await websocket.send_denial_response(deny(refusal))
            return None


def _anonymous_limits(max_body_bytes: int) -> KeyLimits:
    return KeyLimits(
        max_streams=UNLIMITED.max_streams,
        requests_per_minute=UNLIMITED.requests_per_minute,
        max_upload_bytes=max_body_bytes,
        max_jobs=None,
        max_job_bytes=None,
    )


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise _unauthorized("Authorization must be 'Bearer <api key or token>'")
    return credential.strip()


def _unauthorized(message: str) -> Denied:
    return Denied(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


# -- HTTP ---------------------------------------------------------------------------------
def http_middleware(config: SecurityConfig) -> list[Middleware]:
    """CORS (outermost, so refusals carry CORS headers too), then ``AccessMiddleware``."""
    stack = []
    if config.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["Retry-After", "Location"],
            )
        )
    stack.append(Middleware(AccessMiddleware))
    return stack


class AccessMiddleware:
    """Credentials and request rate for ``/v1/...``; body size for every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy: AccessPolicy = scope["app"].state.runtime.access
        headers = Headers(scope=scope)
        try:
            principal = policy.anonymous
            if scope["path"].startswith(PROTECTED_PREFIX):
                principal = policy.authenticate(headers.get("authorization"))
                policy.count_request(principal)
            upload = principal.limits.max_upload_bytes
            cap = None if upload is None else upload + FORM_SLACK
            declared = headers.get("content-length", "")
            if cap is not None and declared.isdigit() and int(declared) > cap:
                raise _too_large(upload)
        except Denied as refusal:
            await refusal.response()(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        if cap is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _capped(receive, cap), tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(upload).response()(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a body outgrows its cap; answered with 413."""


def _too_large(upload: int | None) -> Denied:
    return Denied(413, "too_large", f"request body over the upload limit of {upload} bytes")


def _capped(receive: Receive, cap: int) -> Receive:
    """``receive`` that fails once more than ``cap`` body bytes came in, whatever
    ``Content-Length`` said (or didn't: chunked uploads)."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise BodyTooLarge(cap)
        return message

    return capped


def principal_of(request: Request) -> Principal:
    """Who is calling (set by ``AccessMiddleware``); anonymous when keys are off."""
    principal = request.scope.get("state", {}).get("principal")
    if principal is None:
        return Principal(None, UNLIMITED)
    assert isinstance(principal, Principal)
    return principal


def upload_limit(request: Request) -> int | None:
    """The most bytes this caller may upload in one request (None: no cap). The middleware
    already enforces it while the body streams in; upload routes may check it first
    (e.g. against ``Content-Length``) to refuse early with their own message."""
    return principal_of(request).limits.max_upload_bytes


async def token_endpoint(request: Request) -> JSONResponse:
    """``POST /v1/auth/token`` with an API key → a short-lived token for ``?token=``.

    Body (optional): ``{"ttl_s": seconds}``, capped at the server's maximum."""
    policy: AccessPolicy = request.app.state.runtime.access
    principal = principal_of(request)
    if principal.via_token:
        return Denied(403, "forbidden", "a token cannot mint tokens; use an API key").response()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > TOKEN_BODY_BYTES:
            return Denied(413, "too_large", "token request body too large").response()
    try:
        ttl_s = float(json.loads(body)["ttl_s"]) if body.strip() else None
        if ttl_s is not None and not math.isfinite(ttl_s):
            raise ValueError(ttl_s)
    except (KeyError, TypeError, ValueError, RecursionError):
        return Denied(400, "invalid_request", 'body must be {"ttl_s": <seconds>}').response()
    token, expires_at, expires_in = policy.mint(principal, ttl_s)
    return JSONResponse(
        {
            "token": token,
            "expires_at": expires_at,
            "expires_in": expires_in,
            "key_id": principal.key_id,
        },
        headers={"Cache-Control": "no-store"},
    )
