"""Typed FastAPI dependencies: the services, the caller's API key, and scope checks.

Authorisation rule (docs/design/ledger-service.md): scope `admin` may do everything;
scope `app` may do account, gift and read operations; an `app` key bound to an account
may only act on or read that account (another account's resource is a 403). A missing
or unknown key is a 401.

Authenticated keys are cached in-process for `KEY_CACHE_SECONDS`, keyed by a SHA-256 of
the presented key (the plaintext is never kept), so a busy client does not pay a
database round trip per request; a key in use is re-read once, in the background, before
its entry expires (`KeyCache`). A revocation made in this process empties the cache at
once (`revocation_generation`); one made by another process (`tokenbridge apikey revoke`,
another API worker) takes effect within `KEY_CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tokenbridge.bootstrap import Services
from tokenbridge.domain.errors import Forbidden, InvalidInput, Unauthorized
from tokenbridge.services.api_keys import revocation_generation
from tokenbridge.services.views import ApiKeyInfo

KEY_CACHE_SECONDS = 2.0  # a key revoked by another process stops working here within this many seconds
KEY_REFRESH_AFTER = 1.5  # a key in use is re-read (once, in the background) this long after its last read
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
    """A small TTL cache of successful authentications (thread-safe, bounded), refreshed single-flight.

    An entry is served for `ttl` seconds after it was read. Past `refresh_after` of that, the
    first request to see it starts one re-read in the background and keeps using it, as do
    the others, so a busy key never expires for every in-flight request at once (the herd of
    database reads that used to come every `ttl`). A key with no entry (new, or idle longer
    than `ttl`) is read once however many requests present it at the same time: they all
    await the same read. A revocation made in this process empties the cache at once, and a
    read that started before it is neither cached nor shared with requests that came after
    it; a re-read that finds the key revoked removes it.
    """

    def __init__(self, ttl: float = KEY_CACHE_SECONDS, refresh_after: float = KEY_REFRESH_AFTER) -> None:
        self._ttl = ttl
        self._refresh_after = min(refresh_after, ttl)
        self._entries: dict[bytes, tuple[float, float, ApiKeyInfo]] = {}  # digest -> (expires, refresh at, info)
        self._refreshing: set[bytes] = set()
        self._flights: dict[bytes, tuple[int, Future[ApiKeyInfo]]] = {}  # digest -> (generation, read)
        self._generation = revocation_generation()
        self._lock = threading.Lock()
        self.reads = 0  # database reads started (tests, diagnostics)

    def _check_generation(self) -> None:
        """Forget everything once this process revoked a key (rare; the next requests re-read)."""
        current = revocation_generation()
        if current != self._generation:
            with self._lock:
                self._entries.clear()
                self._refreshing.clear()
                self._generation = current

    def get(self, digest: bytes) -> ApiKeyInfo | None:
        """The cached info while it is fresh (no refresh is started)."""
        self._check_generation()
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[2]

    def put(self, digest: bytes, info: ApiKeyInfo, generation: int | None = None) -> None:
        """Cache `info`, unless a revocation happened since `generation` (read before authenticating)."""
        if self._ttl <= 0:
            return
        with self._lock:
            if generation is not None and generation != revocation_generation():
                return  # a revocation raced this authentication: do not cache what it read
            if len(self._entries) >= _KEY_CACHE_MAX:
                self._entries.clear()
            now = time.monotonic()
            self._entries[digest] = (now + self._ttl, now + self._refresh_after, info)

    def forget(self, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    async def authenticate(self, plaintext: str, read: Callable[[str], ApiKeyInfo]) -> ApiKeyInfo:
        """The key's info: from the cache, or from `read` (blocking; run in a thread, once per key at a time)."""
        digest = hashlib.sha256(plaintext.encode()).digest()
        self._check_generation()
        entry = self._entries.get(digest)
        if entry is not None:
            now = time.monotonic()
            if now <= entry[0]:
                if now >= entry[1] and digest not in self._refreshing:
                    self._refresh(digest, plaintext, read)
                return entry[2]
        return await asyncio.shield(asyncio.wrap_future(self._read(digest, plaintext, read)))

    def _refresh(self, digest: bytes, plaintext: str, read: Callable[[str], ApiKeyInfo]) -> None:
        with self._lock:
            if digest in self._refreshing:
                return
            self._refreshing.add(digest)
        self._read(digest, plaintext, read)

    def _read(self, digest: bytes, plaintext: str, read: Callable[[str], ApiKeyInfo]) -> Future[ApiKeyInfo]:
        """The read of this key in flight since the last revocation, or a new one (in a worker thread)."""
        generation = revocation_generation()
        with self._lock:
            flight = self._flights.get(digest)
            if flight is not None and flight[0] == generation:
                return flight[1]
            future: Future[ApiKeyInfo] = Future()
            self._flights[digest] = (generation, future)
            self.reads += 1

        def work() -> None:
            try:
                info = read(plaintext)
            except BaseException as exc:  # the waiters get it (a worker thread has nobody else to tell)
                if isinstance(exc, Unauthorized):
                    self.forget(digest)  # revoked (by another process) or unknown: stop serving it now
                self._done(digest, future)
                future.set_exception(exc)
            else:
                self.put(digest, info, generation)
                self._done(digest, future)
                future.set_result(info)

        asyncio.get_running_loop().run_in_executor(None, work)
        return future

    def _done(self, digest: bytes, future: Future[ApiKeyInfo]) -> None:
        with self._lock:
            self._refreshing.discard(digest)
            flight = self._flights.get(digest)
            if flight is not None and flight[1] is future:
                del self._flights[digest]


def bearer_token(authorization: str | None) -> str:
    """The key in an `Authorization: Bearer <key>` header value, or 401 (HTTPBearer's parsing)."""
    scheme, _, param = (authorization or "").partition(" ")
    credentials = param.strip()
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    return credentials


async def authenticate(state: Any, plaintext: str) -> ApiKeyInfo:
    """The key's info (401 when it is malformed, unknown or revoked); `state` is the app's state."""
    if len(plaintext) > 512:
        raise Unauthorized("invalid API key")
    cache: KeyCache = state.key_cache
    services: Services = state.services
    return await cache.authenticate(plaintext, services.api_keys.authenticate)


async def api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ApiKeyInfo:
    """The caller's key, or 401 when it is missing, malformed or unknown."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    return await authenticate(request.app.state, credentials.credentials)


def check_app_scope(key: ApiKeyInfo) -> ApiKeyInfo:
    if key.scope not in ("app", "admin"):
        raise Forbidden(f"scope {key.scope!r} may not do this")
    return key


async def require_app(key: Annotated[ApiKeyInfo, Depends(api_key)]) -> ApiKeyInfo:
    """Scope `app` or `admin`."""
    return check_app_scope(key)


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
