"""API keys (admin): create a key, optionally bound to one account; the plaintext is shown once."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from tokenbridge.domain.errors import InvalidInput

from ..deps import AdminOnly, ServicesDep
from ..problems import problem_responses
from ..schemas import ApiKeyOut, CreateApiKey

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.post(
    "",
    status_code=201,
    dependencies=[AdminOnly],
    summary="Create an API key (admin); the plaintext `key` is returned once and stored hashed",
    responses=problem_responses(401, 403, 404, 422),
)
async def create_api_key(body: CreateApiKey, services: ServicesDep) -> ApiKeyOut:
    if body.scope == "admin" and body.account_id is not None:
        raise InvalidInput("admin keys cannot be bound to an account")
    if body.account_id is not None:
        await run_in_threadpool(services.accounts.get, body.account_id)  # 404 before a key for no account
    info, plaintext = await run_in_threadpool(services.api_keys.create, body.scope, body.account_id)
    return ApiKeyOut.of(info, plaintext)
