"""Wallet links and withdrawals (docs/settlement.md).

The settlement services live in `app.state.settlement` (an object with `.epochs` and
`.withdrawals`), set by whoever wires the chain (bootstrap / `tokenbridge serve`); without
them these routes answer 503 `settlement-unavailable` after authorisation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tokenbridge.domain.errors import SettlementUnavailable
from tokenbridge.services.withdrawals import RequestWithdrawal, WalletLinkView, WithdrawalView

from ..deps import AppKey, authorize_account
from ..problems import problem_responses
from ..schemas import ID_PATTERN, Amount, Id, _Request

router = APIRouter(tags=["withdrawals"])

Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$", examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"])]
Signature = Annotated[
    str, Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65-byte EIP-712 signature (r, s, v), 0x-hex.")
]
Deadline = Annotated[
    int, Field(strict=True, gt=0, lt=2**64, description="Unix seconds; the signature is void after it.")
]
WithdrawalId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
CreatorId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]


def settlement(request: Request) -> Any:
    """The settlement services of this app, or 503 when the chain is not wired."""
    found = getattr(request.app.state, "settlement", None)
    if found is None:
        found = getattr(request.app.state.services, "settlement", None)
    if found is None:
        raise SettlementUnavailable("this server has no chain connection configured for settlement")
    return found


class LinkWalletBody(_Request):
    wallet: Address
    deadline: Deadline
    signature: Signature = Field(
        description="EIP-712 WalletLink(string creatorId, bytes32 creatorKey, address wallet, uint256 deadline) "
        "signed by `wallet`; domain {name: tokenbridge, version: 1, chainId, verifyingContract: vault}."
    )


class WalletLinkOut(BaseModel):
    creator_id: str
    wallet: str
    linked_at: datetime

    @classmethod
    def of(cls, v: WalletLinkView) -> WalletLinkOut:
        return cls(creator_id=v.creator_id, wallet=v.wallet, linked_at=v.linked_at)


class WithdrawalBody(_Request):
    id: Id = Field(description="Caller-chosen unique withdrawal id (signed; also the idempotency key).")
    creator_id: Id
    to: Address
    amount: Amount
    deadline: Deadline
    signature: Signature = Field(
        description="EIP-712 Withdrawal(string id, bytes32 creatorKey, address to, uint256 amount, uint256 deadline) "
        "signed by the creator's linked wallet."
    )


class WithdrawalOut(BaseModel):
    id: str
    creator_id: str
    to: str
    amount: int
    state: Literal["requested", "submitted", "confirmed", "failed"]
    payout_id: int = Field(description="The id of this payout on-chain (CoinVault.isPaidOut).")
    tx_hash: str | None
    failure_reason: str | None
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, v: WithdrawalView) -> WithdrawalOut:
        return cls(
            id=v.id,
            creator_id=v.creator_id,
            to=v.to,
            amount=v.amount,
            state=v.state,  # type: ignore[arg-type]
            payout_id=v.payout_id,
            tx_hash=v.tx_hash,
            failure_reason=v.failure_reason,
            created_at=v.created_at,
            submitted_at=v.submitted_at,
            finished_at=v.finished_at,
        )


@router.post(
    "/v1/creators/{creator_id}/wallet",
    status_code=201,
    summary="Link a payout wallet to a creator (EIP-712 WalletLink signed by that wallet)",
    responses=problem_responses(401, 403, 404, 409, 422, 503, ok={"model": WalletLinkOut, "description": "Same link"}),
)
async def link_wallet(
    creator_id: CreatorId, body: LinkWalletBody, key: AppKey, request: Request, response: Response
) -> WalletLinkOut:
    authorize_account(key, creator_id)
    svc = settlement(request)
    view, created = await run_in_threadpool(
        svc.withdrawals.link_wallet, creator_id, body.wallet, body.deadline, body.signature
    )
    if not created:
        response.status_code = 200
    return WalletLinkOut.of(view)


@router.post(
    "/v1/withdrawals",
    status_code=201,
    response_model=WithdrawalOut,
    summary="Request a withdrawal (EIP-712 Withdrawal signed by the linked wallet); idempotent by id",
    responses=problem_responses(
        401, 403, 404, 409, 422, 503, ok={"model": WithdrawalOut, "description": "Replay of an identical request"}
    ),
)
async def request_withdrawal(body: WithdrawalBody, key: AppKey, request: Request) -> Response:
    authorize_account(key, body.creator_id)
    svc = settlement(request)
    cmd = RequestWithdrawal(body.id, body.creator_id, body.to, body.amount, body.deadline, body.signature)
    view, created = await run_in_threadpool(svc.withdrawals.request, cmd)
    # serialised once by pydantic-core (FastAPI would dump, re-validate and serialise the return value)
    return Response(
        WithdrawalOut.of(view).model_dump_json().encode(),
        status_code=201 if created else 200,
        media_type="application/json",
    )


@router.get(
    "/v1/withdrawals/{withdrawal_id}",
    summary="A withdrawal: requested -> submitted -> confirmed | failed, with the payout tx hash",
    responses=problem_responses(401, 403, 404, 503),
)
async def get_withdrawal(withdrawal_id: WithdrawalId, key: AppKey, request: Request) -> WithdrawalOut:
    svc = settlement(request)
    view = await run_in_threadpool(svc.withdrawals.get, withdrawal_id)
    authorize_account(key, view.creator_id)
    return WithdrawalOut.of(view)
