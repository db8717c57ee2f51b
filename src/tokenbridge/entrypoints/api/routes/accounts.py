"""Accounts: open (idempotent), read, list, and (admin) set flags."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Response
from starlette.concurrency import run_in_threadpool

from tokenbridge.domain.errors import Forbidden

from ..deps import AdminOnly, AppKey, ServicesDep, authorize_account, bound_account
from ..problems import problem_responses
from ..schemas import ID_PATTERN, AccountFlags, AccountOut, AccountPage, Cursor, Limit, OpenAccount

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

AccountId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]


@router.post(
    "",
    status_code=201,
    summary="Open an account (idempotent: the same id and attributes again answer 200)",
    responses=problem_responses(401, 403, 409, 422, ok={"model": AccountOut, "description": "It already existed"}),
)
async def open_account(body: OpenAccount, key: AppKey, services: ServicesDep, response: Response) -> AccountOut:
    authorize_account(key, body.id)
    view, created = await run_in_threadpool(
        partial(services.accounts.open, body.id, body.kind, is_minor=body.is_minor, restricted=body.restricted)
    )
    if not created:
        response.status_code = 200
    return AccountOut.of(view)


@router.get("/{account_id}", summary="An account and its balances", responses=problem_responses(401, 403, 404, 422))
async def get_account(account_id: AccountId, key: AppKey, services: ServicesDep) -> AccountOut:
    authorize_account(key, account_id)
    return AccountOut.of(await run_in_threadpool(services.accounts.get, account_id))


@router.get(
    "", summary="All accounts in id order (keys not bound to an account)", responses=problem_responses(401, 403, 422)
)
async def list_accounts(key: AppKey, services: ServicesDep, limit: Limit = 50, cursor: Cursor = None) -> AccountPage:
    if bound_account(key) is not None:
        raise Forbidden("a key bound to one account may not list other accounts")
    page = await run_in_threadpool(partial(services.accounts.list, limit=limit, cursor=cursor))
    return AccountPage(items=[AccountOut.of(v) for v in page.items], next_cursor=page.next_cursor)


@router.patch(
    "/{account_id}",
    summary="Set an account's flags (admin)",
    dependencies=[AdminOnly],
    responses=problem_responses(401, 403, 404, 422),
)
async def set_account_flags(account_id: AccountId, body: AccountFlags, services: ServicesDep) -> AccountOut:
    view = await run_in_threadpool(
        partial(services.accounts.set_flags, account_id, is_minor=body.is_minor, restricted=body.restricted)
    )
    return AccountOut.of(view)
