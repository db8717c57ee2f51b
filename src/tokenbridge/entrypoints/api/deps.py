"""Typed FastAPI dependencies: the services, the caller's API key, and scope checks.

Authorisation rule (docs/design/ledger-service.md): scope `admin` may do everything;
scope `app` may do account, gift and read operations; an `app` key bound to an account
may only act on or read that account (another account's resource is a 403). A missing
or unknown key is a 401.

Authenticated keys are cached in-process for `KEY_CACHE_SECONDS`, keyed by a SHA-256 of
the presented key (the plaintext is never kept), so a busy client does not pay a
database round trip per request. A revocation made in this process empties the cache at
once (`revocation_generation`); one made by another process (`tokenbridge apikey revoke`,
another API worker) takes effect within `KEY_CACHE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from tokenbridge.bootstrap import Services
from tokenbridge.domain.errors import Forbidden, InvalidInput, Unauthorized
from tokenbridge.services.api_keys import revocation_generation
from tokenbridge.services.views import ApiKeyInfo

KEY_CACHE_SECONDS = 2.0  # a key revoked by another process stops working here within this many seconds
_KEY_CACHE_MAX = 10_000

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer <key>`; create keys with `tokenbridge apikey create --scope app|admin`.",
)


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class KeyCache:
    """A small TTL cache of successful authentications (thread-safe, bounded)."""

    def __init__(self, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._ttl = ttl
        self._entries: dict[bytes, tuple[float, ApiKeyInfo]] = {}
        self._generation = revocation_generation()
        self._lock = threading.Lock()

    def _check_generation(self) -> None:
        """Forget everything once this process revoked a key (rare; the next requests re-read)."""
        current = revocation_generation()
        if current != self._generation:
            with self._lock:
                self._entries.clear()
                self._generation = current

    def get(self, digest: bytes) -> ApiKeyInfo | None:
        self._check_generation()
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires, info = entry
        if expires < time.monotonic():
            with self._lock:
                self._entries.pop(digest, None)
            return None
        return info

    def put(self, digest: bytes, info: ApiKeyInfo, generation: int | None = None) -> None:
        """Cache `info`, unless a revocation happened since `generation` (read before authenticating)."""
        if self._ttl <= 0:
            return
        with self._lock:
            if generation is not None and generation != revocation_generation():
                return  # a revocation raced this authentication: do not cache what it read
            if len(self._entries) >= _KEY_CACHE_MAX:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + self._ttl, info)


async def api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ApiKeyInfo:
    """The caller's key, or 401 when it is missing, malformed or unknown."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    plaintext = credentials.credentials
    if len(plaintext) > 512:
        raise Unauthorized("invalid API key")
    cache: KeyCache = request.app.state.key_cache
    digest = hashlib.sha256(plaintext.encode()).digest()
    info = cache.get(digest)
    if info is None:
        services: Services = request.app.state.services
        generation = revocation_generation()
        info = await run_in_threadpool(services.api_keys.authenticate, plaintext)
        cache.put(digest, info, generation)
    return info


async def require_app(key: Annotated[ApiKeyInfo, Depends(api_key)]) -> ApiKeyInfo:
    """Scope `app` or `admin`."""
    if key.scope not in ("app", "admin"):
        raise Forbidden(f"scope {key.scope!r} may not do this")
    return key


async def require_admin(key: Annotated[ApiKeyInfo, Depends(api_key)]) -> ApiKeyInfo:
    """Scope `admin` only."""
    if key.scope != "admin":
        raise Forbidden("this operation needs a key with scope 'admin'")
    return key


AppKey = Annotated[ApiKeyInfo, Depends(require_app)]
AdminKey = Annotated[ApiKeyInfo, Depends(require_admin)]
AdminOnly = Depends(require_admin)  # for routes that need the check but not the key

# The dependencies that make a route authenticated; tests/api walk the route table for them.
AUTH_DEPENDENCIES = {"app": require_app, "admin": require_admin}


def bound_account(key: ApiKeyInfo) -> str | None:
    """The account a key is restricted to, or None when it may act on any account."""
    if key.scope == "admin":
        return None
    return key.account_id


def authorize_account(key: ApiKeyInfo, *account_ids: str) -> None:
    """403 unless the key may act on one of `account_ids` (any, for unbound keys)."""
    bound = bound_account(key)
    if bound is not None and bound not in account_ids:
        raise Forbidden(f"this key is bound to account {bound!r} and may not act on another account")


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def no_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not declare (a typo like `?limt=` must not be ignored)."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    unknown = sorted(set(request.query_params) - _query_names(dependant))  # a few µs, only with a query
    if unknown:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)[:200]}")
