"""Public transparency endpoints (no key), and what only an account's holder may fetch: the balance
proof of an account and the gift receipt with its sender's salt (the account's key or an unbound key).

Everything here is read from the chain or from what was committed to it, so a reader can
check it with `tokenbridge verify` and an RPC URL alone (docs/design/receipts.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tokenbridge.services.epochs import EpochView

from ..deps import AppKey, ServicesDep, authorize_account, bound_account
from ..problems import problem_responses
from ..schemas import ID_PATTERN, MAX_PAGE
from .withdrawals import settlement

router = APIRouter(tags=["transparency"])

GiftId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
AccountId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
EpochId = Annotated[int, Path(ge=1, lt=2**63)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=32, pattern=r"^[0-9]+$", description="`next_cursor` of the last page.")]


class PendingSplitOut(BaseModel):
    creator_bps: int
    effective_at: int = Field(description="Unix seconds from which the admin may apply it.")


class SplitOut(BaseModel):
    creator_bps: int = Field(description="Creator share in basis points, in force on-chain now.")
    platform_bps: int
    pending: PendingSplitOut | None
    split_delay: int = Field(description="Seconds between proposing and applying a rate.")
    payout_delay: int = Field(description="Seconds from settlement until earnings can be withdrawn (maturity).")


class ChunkOut(BaseModel):
    index: int
    creators: int
    gross: str
    state: str
    tx_hash: str | None
    block: int | None


class EpochOut(BaseModel):
    id: int
    state: str
    creator_bps: int | None
    gift_count: int
    gross_total: str
    creator_total: str
    rounding_adjustment: str
    gift_root: str | None
    chunk_count: int
    settle_tx_hash: str | None
    settled_block: int | None
    closed_at: datetime | None
    settled_at: datetime | None
    liabilities_state: str
    liabilities_root: str | None
    liabilities_total: str | None
    liabilities_tx_hash: str | None
    chunks: list[ChunkOut]

    @classmethod
    def of(cls, v: EpochView) -> EpochOut:
        return cls(
            id=v.id,
            state=v.state,
            creator_bps=v.bps,
            gift_count=v.gift_count,
            gross_total=str(v.gross_total),
            creator_total=str(v.creator_total),
            rounding_adjustment=str(v.rounding_total),
            gift_root=v.root,
            chunk_count=v.chunk_count,
            settle_tx_hash=v.settle_tx_hash,
            settled_block=v.settled_block,
            closed_at=v.closed_at,
            settled_at=v.settled_at,
            liabilities_state=v.liabilities_state,
            liabilities_root=v.liabilities_root,
            liabilities_total=None if v.liabilities_total is None else str(v.liabilities_total),
            liabilities_tx_hash=v.liabilities_tx_hash,
            chunks=[
                ChunkOut(
                    index=c.index,
                    creators=c.creators,
                    gross=str(c.gross),
                    state=c.state,
                    tx_hash=c.tx_hash,
                    block=c.block,
                )
                for c in v.chunks
            ],
        )


class EpochPageOut(BaseModel):
    items: list[EpochOut]
    next_cursor: str | None


class ReserveOut(BaseModel):
    reserve: str = Field(description="The vault's token balance (base units).")
    liabilities_epoch: int | None
    liabilities_root: str | None
    liabilities_total: str | None
    committed_at: int | None
    solvent: bool = Field(description="CoinVault.solvent(): a commitment exists and reserve >= its total.")


@router.get(
    "/v1/public/split",
    summary="Split rate in force and any pending change (from the chain)",
    responses=problem_responses(503),
)
async def get_split(request: Request) -> SplitOut:
    info = await run_in_threadpool(settlement(request).epochs.split)
    pending = (
        PendingSplitOut(creator_bps=info.pending.bps, effective_at=info.pending.effective_at)
        if info.pending is not None
        else None
    )
    return SplitOut(
        creator_bps=info.creator_bps,
        platform_bps=10_000 - info.creator_bps,
        pending=pending,
        split_delay=info.split_delay,
        payout_delay=info.payout_delay,
    )


@router.get("/v1/public/epochs", summary="Closed epochs, newest first", responses=problem_responses(422, 503))
async def list_epochs(request: Request, limit: Limit = 50, cursor: Cursor = None) -> EpochPageOut:
    page = await run_in_threadpool(lambda: settlement(request).epochs.list(limit=limit, cursor=cursor))
    return EpochPageOut(items=[EpochOut.of(e) for e in page.items], next_cursor=page.next_cursor)


@router.get(
    "/v1/public/epochs/{epoch_id}",
    summary="One epoch with its transaction hashes",
    responses=problem_responses(404, 422, 503),
)
async def get_epoch(epoch_id: EpochId, request: Request) -> EpochOut:
    view = await run_in_threadpool(settlement(request).epochs.get, epoch_id)
    return EpochOut.of(view)


@router.get(
    "/v1/public/gifts/{gift_id}/proof",
    summary="tokenbridge-gift-receipt/v1 document of a settled gift (verify with `tokenbridge verify`)",
    responses=problem_responses(404, 422, 503),
)
async def gift_proof(gift_id: GiftId, request: Request) -> dict[str, Any]:
    doc: dict[str, Any] = await run_in_threadpool(settlement(request).epochs.gift_proof, gift_id)
    return doc


@router.get(
    "/v1/gifts/{gift_id}/receipt",
    summary="tokenbridge-gift-receipt/v1 of a settled gift WITH `sender` (account id and salt), for its sender",
    description="Lets the sender prove the gift is theirs: `tokenbridge verify gift` checks "
    "`account_key(sender.account_id, sender.salt) == from_key` (`sender_key`). Needs a key bound to the "
    "sender's account, or an unbound app/admin key; a key bound to any other account (the creator's too) "
    "gets 403, since the salt is the sender's secret.",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def gift_receipt(gift_id: GiftId, key: AppKey, services: ServicesDep, request: Request) -> dict[str, Any]:
    if bound_account(key) is not None:  # look the sender up in the ledger before touching the chain
        gift = await run_in_threadpool(services.gifts.get, gift_id)
        authorize_account(key, gift.sender_id)
    epochs = settlement(request).epochs
    doc: dict[str, Any] = await run_in_threadpool(lambda: epochs.gift_proof(gift_id, with_sender=True))
    return doc


@router.get(
    "/v1/public/reserve", summary="Vault balance vs the latest liabilities commitment", responses=problem_responses(503)
)
async def get_reserve(request: Request) -> ReserveOut:
    v = await run_in_threadpool(settlement(request).epochs.reserve)
    return ReserveOut(
        reserve=str(v.reserve),
        liabilities_epoch=v.liabilities_epoch,
        liabilities_root=v.liabilities_root,
        liabilities_total=None if v.liabilities_total is None else str(v.liabilities_total),
        committed_at=v.committed_at,
        solvent=v.solvent,
    )


@router.get(
    "/v1/accounts/{account_id}/balance-proof",
    summary="tokenbridge-balance-proof/v1 of the account in the latest liabilities commitment",
    responses=problem_responses(401, 403, 404, 503),
)
async def balance_proof(account_id: AccountId, key: AppKey, request: Request) -> dict[str, Any]:
    authorize_account(key, account_id)
    doc: dict[str, Any] = await run_in_threadpool(settlement(request).epochs.balance_proof, account_id)
    return doc
