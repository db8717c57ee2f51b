"""Gifts: post one (idempotent by id), post a batch, read, list."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tokenbridge.domain.errors import Forbidden, TokenbridgeError
from tokenbridge.services.views import GiftReceipt, PostGift

from ..deps import AppKey, ServicesDep, authorize_account, bound_account
from ..metrics import ApiMetrics
from ..problems import error_problem, problem_responses
from ..schemas import (
    ID_PATTERN,
    BatchItemOut,
    Cursor,
    GiftBatch,
    GiftBatchOut,
    GiftPage,
    GiftReceiptOut,
    Limit,
    PostGiftBody,
)

router = APIRouter(prefix="/v1/gifts", tags=["gifts"])

GiftId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
AccountFilter = Annotated[
    str | None,
    Query(min_length=1, max_length=128, pattern=ID_PATTERN, description="Only gifts sent or received by this account."),
]


def _metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


def _command(body: PostGiftBody) -> PostGift:
    return PostGift(id=body.id, sender_id=body.sender, creator_id=body.to, amount=body.amount)


def _shown(receipt: GiftReceipt, key_account: str | None) -> GiftReceiptOut:
    # The sender's salt links their on-chain key to them: only the sender (or an unbound key) sees it.
    return GiftReceiptOut.trusted(receipt, with_salt=key_account in (None, receipt.sender_id))


def _json(model: BaseModel, status_code: int = 200) -> Response:
    """Serialise once, in pydantic-core (FastAPI would dump, re-validate, then serialise the
    return value against `response_model`, three passes over a 1,000-item batch answer)."""
    return Response(model.model_dump_json().encode(), status_code=status_code, media_type="application/json")


@router.post(
    "",
    status_code=201,
    response_model=GiftReceiptOut,
    summary="Post a gift (idempotent: the same id and body again answer 200 with the first receipt)",
    responses=problem_responses(
        401, 403, 404, 409, 422, ok={"model": GiftReceiptOut, "description": "Replay of an earlier identical request"}
    ),
)
async def post_gift(body: PostGiftBody, key: AppKey, services: ServicesDep, request: Request) -> Response:
    authorize_account(key, body.sender)
    metrics = _metrics(request)
    try:
        receipt, created = await run_in_threadpool(services.gifts.post, _command(body))
    except TokenbridgeError as exc:
        metrics.gift("rejected", exc.code)
        raise
    metrics.gift("created" if created else "replayed")
    return _json(_shown(receipt, bound_account(key)), 201 if created else 200)


@router.post(
    "/batch",
    summary="Post up to 1000 gifts; each item is atomic and answered like POST /v1/gifts",
    response_model=GiftBatchOut,
    responses=problem_responses(401, 403, 422),
)
async def post_gift_batch(body: GiftBatch, key: AppKey, services: ServicesDep, request: Request) -> Response:
    bound = bound_account(key)
    if bound is not None and any(g.sender != bound for g in body.gifts):
        raise Forbidden(f"this key is bound to account {bound!r}: every gift must be sent from it")
    metrics = _metrics(request)
    results: list[BatchItemOut] = []
    created_n = replayed_n = failed_n = 0
    outcomes = await run_in_threadpool(services.gifts.post_batch, [_command(g) for g in body.gifts])
    for outcome in outcomes:
        if isinstance(outcome, TokenbridgeError):
            failed_n += 1
            metrics.gift("rejected", outcome.code)
            results.append(
                BatchItemOut.model_construct(status=outcome.status, receipt=None, problem=error_problem(outcome))
            )
            continue
        receipt, created = outcome
        if created:
            created_n += 1
        else:
            replayed_n += 1
        results.append(
            BatchItemOut.model_construct(status=201 if created else 200, receipt=_shown(receipt, bound), problem=None)
        )
    if created_n:
        metrics.gifts.labels("created", "").inc(created_n)
    if replayed_n:
        metrics.gifts.labels("replayed", "").inc(replayed_n)
    return _json(GiftBatchOut.model_construct(results=results, created=created_n, replayed=replayed_n, failed=failed_n))


@router.get("/{gift_id}", summary="A gift's receipt", responses=problem_responses(401, 403, 404, 422))
async def get_gift(gift_id: GiftId, key: AppKey, services: ServicesDep) -> GiftReceiptOut:
    receipt = await run_in_threadpool(services.gifts.get, gift_id)
    authorize_account(key, receipt.sender_id, receipt.creator_id)
    return _shown(receipt, bound_account(key))


@router.get(
    "",
    summary="Gifts in id order; keys bound to an account see only that account's gifts",
    responses=problem_responses(401, 403, 422),
)
async def list_gifts(
    key: AppKey,
    services: ServicesDep,
    account_id: AccountFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> GiftPage:
    bound = bound_account(key)
    if bound is not None:
        authorize_account(key, account_id or bound)
        account_id = bound
    page = await run_in_threadpool(partial(services.gifts.list, account_id=account_id, limit=limit, cursor=cursor))
    return GiftPage(items=[_shown(r, bound) for r in page.items], next_cursor=page.next_cursor)
