"""API keys: created once (plaintext shown once), stored as sha256, revocable.

A key is `tb_` + 43 url-safe characters (256 random bits); sha256 of such a key cannot
be brute-forced, so no slow KDF is needed and lookup is one indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets
import threading

from tokenbridge.adapters.db.migrate import translate_errors
from tokenbridge.adapters.db.models import ApiKey
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.domain.accounts import validate_id
from tokenbridge.domain.errors import InvalidInput, NotFound, Unauthorized
from tokenbridge.services._common import Clock, utc_clock
from tokenbridge.services.views import ApiKeyInfo, ApiKeyScope

KEY_PREFIX = "tb_"

# Bumped by every revocation in this process: authentication caches compare it to the value
# they stored with an entry, so a key revoked here stops working at once in this process.
_revocations = [0]
_revocations_lock = threading.Lock()


def revocation_generation() -> int:
    """How many revocations this process has made (cached authentications older than it are stale)."""
    return _revocations[0]


def _bump_revocations() -> None:
    with _revocations_lock:
        _revocations[0] += 1


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _info(row: ApiKey) -> ApiKeyInfo:
    scope: ApiKeyScope = "admin" if row.scope == "admin" else "app"
    return ApiKeyInfo(
        id=row.id, scope=scope, account_id=row.account_id, created_at=row.created_at, revoked=row.revoked_at is not None
    )


class ApiKeyService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock = utc_clock) -> None:
        self._uow = uow
        self._clock = clock

    def create(self, scope: ApiKeyScope, account_id: str | None = None) -> tuple[ApiKeyInfo, str]:
        if scope not in ("app", "admin"):
            raise InvalidInput(f"scope must be 'app' or 'admin', got {scope!r}")
        if account_id is not None:
            account_id = validate_id(account_id, "account_id")
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        with translate_errors(), self._uow.write() as uow:
            if account_id is not None and uow.accounts.get(account_id) is None:
                raise NotFound(f"account {account_id} not found")
            row = ApiKey(
                id="key_" + secrets.token_hex(8),
                key_hash=hash_key(plaintext),
                scope=scope,
                account_id=account_id,
                created_at=self._clock(),
                revoked_at=None,
            )
            uow.api_keys.add(row)
            uow.commit()
            return _info(row), plaintext

    def authenticate(self, plaintext: str) -> ApiKeyInfo:
        if not plaintext or not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 200:
            raise Unauthorized("invalid API key")
        with self._uow.read() as uow:
            row = uow.api_keys.by_hash(hash_key(plaintext))
            if row is None or row.revoked_at is not None:
                raise Unauthorized("invalid or revoked API key")
            return _info(row)

    def list(self) -> list[ApiKeyInfo]:
        with translate_errors(), self._uow.read() as uow:
            return [_info(r) for r in uow.api_keys.all()]

    def revoke(self, key_id: str) -> ApiKeyInfo:
        with translate_errors(), self._uow.write() as uow:
            row = uow.api_keys.get(key_id)
            if row is None:
                raise NotFound(f"api key {key_id} not found")
            if row.revoked_at is None:
                row.revoked_at = self._clock()
            uow.commit()
            info = _info(row)
        _bump_revocations()
        return info
