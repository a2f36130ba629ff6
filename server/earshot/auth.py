"""API keys and short-lived tokens (no web framework here; ``access.py`` is the glue).

Keys are stored only as SHA-256 digests and every digest is compared with
``hmac.compare_digest`` (no early exit), so neither memory dumps nor response timing
give keys away. Keys are long random strings (``generate_key``), which is why a plain,
unsalted SHA-256 is enough: there is nothing to brute-force.

Tokens let browsers, which cannot set headers on a WebSocket, connect with
``?token=``: ``et1.<payload>.<signature>``, the payload a base64url JSON object
``{"kid", "kb", "iat", "exp"}`` and the signature HMAC-SHA256 over ``et1.<payload>``
with the server's token secret. ``kid`` names the key the token was minted with; ``kb``
binds it to that key's digest (an HMAC of it, so it reveals nothing), so a token dies
with its key. Replicas behind one load balancer need the same secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace

from earshot.limits import MIB, KeyLimits

KEY_PREFIX = "esk_"
TOKEN_PREFIX = "et1."
MIN_KEY_LENGTH = 16
_HASH_PREFIX = "sha256:"
_OPTIONS = {"name", "role", "streams", "rpm", "upload_mb", "jobs", "jobs_mb"}
ROLES = ("user", "admin")
"""``user``: sees its own jobs only; ``admin``: sees (and may delete) every key's jobs."""


class AuthError(Exception):
    """A credential that doesn't let the caller in; the message is safe to show."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    """Public name (``name=`` in the keys file, else ``key-<n>``): logs, limits, tokens."""
    digest: bytes
    """SHA-256 of the key; the key itself is never kept."""
    limits: KeyLimits
    role: str = "user"

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` form a keys file may hold instead of the key."""
    return _HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def parse_keys(entries: Iterable[str], defaults: KeyLimits) -> list[ApiKey]:
    """Parse keys-file lines (or ``EARSHOT_API_KEYS`` entries).

    Each entry: a key or ``sha256:<hex>``, then optional ``name=``, ``role=`` (``user``,
    the default, or ``admin``), ``streams=``, ``rpm=``, ``upload_mb=``, ``jobs=``
    (outstanding file jobs), ``jobs_mb=`` (their audio) (``0`` = no limit). ``#`` starts
    a comment.
    """
    keys: list[ApiKey] = []
    for number, raw in enumerate(entries, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        secret, *options = line.split()
        digest = _digest_of(secret, number)
        fields = dict(_option(o, number) for o in options)
        role = fields.pop("role", "user")
        if role not in ROLES:
            raise ValueError(f"API key entry {number}: role must be one of {ROLES}")
        key = ApiKey(fields.pop("name", f"key-{len(keys) + 1}"), digest, defaults, role)
        keys.append(replace(key, limits=_limits(defaults, fields, number)))
    names = [k.key_id for k in keys]
    if len(set(names)) != len(names):
        raise ValueError("API key names must be unique")
    return keys


def _digest_of(secret: str, number: int) -> bytes:
    if secret.startswith(_HASH_PREFIX):
        try:
            digest = bytes.fromhex(secret.removeprefix(_HASH_PREFIX))
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError(f"API key entry {number}: sha256: needs 64 hex digits")
        return digest
    if len(secret) < MIN_KEY_LENGTH:
        raise ValueError(
            f"API key entry {number}: shorter than {MIN_KEY_LENGTH} characters"
            " (make one with `earshot keygen`)"
        )
    return hashlib.sha256(secret.encode()).digest()


def _option(text: str, number: int) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or name not in _OPTIONS or not value:
        raise ValueError(f"API key entry {number}: bad option {text!r}; known: {sorted(_OPTIONS)}")
    return name, value


def _limits(defaults: KeyLimits, fields: dict[str, str], number: int) -> KeyLimits:
    def count(name: str, scale: int = 1) -> int | None:
        try:
            value = int(fields[name])
        except ValueError:
            raise ValueError(f"API key entry {number}: {name} must be an integer") from None
        if value < 0:
            raise ValueError(f"API key entry {number}: {name} must not be negative")
        return value * scale or None

    limits = defaults
    if "streams" in fields:
        limits = replace(limits, max_streams=count("streams"))
    if "rpm" in fields:
        limits = replace(limits, requests_per_minute=count("rpm"))
    if "upload_mb" in fields:
        limits = replace(limits, max_upload_bytes=count("upload_mb", MIB))
    if "jobs" in fields:
        limits = replace(limits, max_jobs=count("jobs"))
    if "jobs_mb" in fields:
        limits = replace(limits, max_job_bytes=count("jobs_mb", MIB))
    return limits


class KeyStore:
    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys = tuple(keys)
        self._by_id = {k.key_id: k for k in self._keys}

    @property
    def enabled(self) -> bool:
        """No keys configured means open access (meant for loopback only)."""
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, presented: str) -> ApiKey | None:
        """The key matching ``presented``, comparing against every stored digest."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found

    def get(self, key_id: str) -> ApiKey | None:
        return self._by_id.get(key_id)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes | None = None, *, max_ttl_s: float = 3600.0) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.max_ttl_s = max_ttl_s

    def _sign(self, message: bytes) -> bytes:
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def _binding(self, key: ApiKey) -> str:
        return _b64encode(self._sign(b"key-binding:" + key.digest)[:12])

    def mint(self, key: ApiKey, ttl_s: float, now: float) -> tuple[str, int]:
        """A token for ``key`` valid ``ttl_s`` seconds (capped); returns it and its expiry."""
        expires = int(now + min(max(ttl_s, 1.0), self.max_ttl_s))
        claims = {"kid": key.key_id, "kb": self._binding(key), "iat": int(now), "exp": expires}
        payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
        signed = TOKEN_PREFIX + payload
        return f"{signed}.{_b64encode(self._sign(signed.encode()))}", expires

    def verify(self, token: str, keys: KeyStore, now: float) -> ApiKey:
        """The key a valid, unexpired token was minted for; ``AuthError`` otherwise."""
        signed, _, signature = token.rpartition(".")
        if not signed.startswith(TOKEN_PREFIX) or len(token) > 1024:
            raise AuthError("malformed token")
        try:
            valid = hmac.compare_digest(_b64decode(signature), self._sign(signed.encode()))
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise AuthError("invalid token signature")
        # Signed by us from here on, so the payload is well-formed.
        claims = json.loads(_b64decode(signed.removeprefix(TOKEN_PREFIX)))
        if now >= claims["exp"]:
            raise AuthError("token expired")
        key = keys.get(claims["kid"])
        if key is None or not hmac.compare_digest(claims["kb"], self._binding(key)):
            raise AuthError("token's key was revoked")
        return key
