"""Post gifts: sender coins -> creator earnings + platform revenue, at the rate in force.

Only the sender's row is locked (its coins must never go negative); the creator's
earnings and the platform's revenue legs are appended and folded later (docs/ledger.md).
"""

from __future__ import annotations

from tokenbridge.adapters.db.models import Account, Gift
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.accounts import DailyLimits
from tokenbridge.domain.errors import NotFound, TokenbridgeError
from tokenbridge.domain.gifts import (
    CreatorState,
    GiftRequest,
    SenderState,
    check_gift,
    gift_posting,
    validate_batch_size,
    validate_gift,
)
from tokenbridge.services._common import Clock, retry_on_race, roll_day, utc_clock, validate_limit
from tokenbridge.services.rates import RateProvider
from tokenbridge.services.views import GiftReceipt, Page, PostGift


def receipt(gift: Gift, sender: Account) -> GiftReceipt:
    return GiftReceipt(
        id=gift.id,
        sender_id=gift.sender_id,
        creator_id=gift.creator_id,
        sender_key=gift.sender_key,
        creator_key=gift.creator_key,
        sender_salt="0x" + sender.salt.hex(),
        gross=gift.gross,
        creator_amount=gift.creator_amount,
        platform_amount=gift.platform_amount,
        creator_bps=gift.creator_bps,
        status="settled" if gift.status == "settled" else "posted",
        epoch_id=gift.epoch_id,
        created_at=gift.created_at,
    )


class GiftService:
    def __init__(
        self, uow: UnitOfWorkFactory, rate: RateProvider, limits: DailyLimits, clock: Clock = utc_clock
    ) -> None:
        self._uow = uow
        self._rate = rate
        self._limits = limits
        self._clock = clock

    def post(self, cmd: PostGift) -> tuple[GiftReceipt, bool]:
        """Post one gift atomically; a replay with the same body returns the first receipt."""
        req = validate_gift(cmd.id, cmd.sender_id, cmd.creator_id, cmd.amount)
        req_hash = lg.request_hash(req.body())
        return retry_on_race(lambda: self._post(req, req_hash))

    def _post(self, req: GiftRequest, req_hash: str) -> tuple[GiftReceipt, bool]:
        with self._uow.write() as uow:
            # lock first, then look for the id: a concurrent post of the same id by the same
            # sender has committed by the time we hold the lock (another sender's races to
            # the unique constraint and is re-read by retry_on_race)
            sender = uow.accounts.lock(req.sender_id)
            replay = self._replay(uow, req, req_hash)
            if replay is not None:
                return replay
            if sender is None:
                raise NotFound(f"account {req.sender_id} not found")
            creator = uow.accounts.get(req.creator_id)
            if creator is None:
                raise NotFound(f"account {req.creator_id} not found")
            now = self._clock()
            roll_day(sender, now)
            check_gift(
                req,
                SenderState(
                    id=sender.id,
                    kind=sender.kind,
                    coins=sender.coins,
                    debt=sender.debt,
                    restricted=sender.restricted,
                    gifted_today=sender.gifted_today,
                    daily_limit=self._limits.gift_limit(sender.is_minor),
                ),
                CreatorState(id=creator.id, kind=creator.kind, restricted=creator.restricted),
            )
            parts, posting = gift_posting(req, self._rate.creator_bps())
            transfer = uow.ledger.apply(posting, f"gift:{req.id}", req_hash, {lg.coins(sender.id): sender}, now)
            sender.gifted_today += req.amount
            gift = Gift(
                id=req.id,
                transfer_id=transfer.id,
                sender_id=sender.id,
                creator_id=creator.id,
                sender_key=sender.account_key,
                creator_key=creator.account_key,
                gross=parts.gross,
                creator_amount=parts.creator_amount,
                platform_amount=parts.platform_amount,
                creator_bps=parts.creator_bps,
                status="posted",
                epoch_id=None,
                request_hash=req_hash,
                created_at=now,
            )
            uow.gifts.add(gift)
            uow.commit()
            return receipt(gift, sender), True

    @staticmethod
    def _replay(uow: SqlUnitOfWork, req: GiftRequest, req_hash: str) -> tuple[GiftReceipt, bool] | None:
        existing = uow.gifts.get(req.id)
        if existing is None:
            return None
        lg.check_replay("gift id", req.id, existing.request_hash, req_hash)
        sender = uow.accounts.get(existing.sender_id)
        assert sender is not None  # foreign key
        return receipt(existing, sender), False

    def post_batch(self, cmds: list[PostGift]) -> list[tuple[GiftReceipt, bool] | TokenbridgeError]:
        """Each item is its own atomic, idempotent posting; a refused item does not stop the rest."""
        validate_batch_size(len(cmds))
        results: list[tuple[GiftReceipt, bool] | TokenbridgeError] = []
        for cmd in cmds:
            try:
                results.append(self.post(cmd))
            except TokenbridgeError as exc:
                results.append(exc)
        return results

    def get(self, gift_id: str) -> GiftReceipt:
        with self._uow.read() as uow:
            gift = uow.gifts.get(gift_id)
            if gift is None:
                raise NotFound(f"gift {gift_id} not found")
            sender = uow.accounts.get(gift.sender_id)
            assert sender is not None  # foreign key
            return receipt(gift, sender)

    def list(self, *, account_id: str | None = None, limit: int = 50, cursor: str | None = None) -> Page[GiftReceipt]:
        limit = validate_limit(limit)
        with self._uow.read() as uow:
            gifts = uow.gifts.page(account_id, limit, cursor)
            salts: dict[str, Account] = {}
            items = []
            for g in gifts:
                if g.sender_id not in salts:
                    sender = uow.accounts.get(g.sender_id)
                    assert sender is not None
                    salts[g.sender_id] = sender
                items.append(receipt(g, salts[g.sender_id]))
        return Page(items, items[-1].id if len(items) == limit else None)
