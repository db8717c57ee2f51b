"""Post gifts: sender coins -> creator earnings + platform revenue, at the rate in force.

Only the sender's row is locked (its coins must never go negative); the creator's
earnings and the platform's revenue legs are appended and folded later (docs/ledger.md).
The rules (validation, limits, split, idempotency) are the pure `domain.gifts` and
`domain.ledger`; the SQL is `adapters.db.gift_ledger` (few round trips, no ORM flush).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tokenbridge.adapters.db.gift_ledger import CreatorRow, NewGift, SenderRow, SenderUpdate
from tokenbridge.adapters.db.models import Gift
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.accounts import DailyLimits
from tokenbridge.domain.errors import NotFound, TokenbridgeError
from tokenbridge.domain.gifts import (
    CreatorState,
    GiftRequest,
    SenderState,
    debit_sender,
    gift_posting,
    gifted_on,
    validate_batch_size,
    validate_gift,
)
from tokenbridge.domain.split import Split
from tokenbridge.services._common import Clock, retry_on_race, utc_clock, validate_limit
from tokenbridge.services.rates import RateProvider
from tokenbridge.services.views import GiftReceipt, Page, PostGift


def receipt(gift: Gift, sender_salt: bytes) -> GiftReceipt:
    return GiftReceipt(
        id=gift.id,
        sender_id=gift.sender_id,
        creator_id=gift.creator_id,
        sender_key=gift.sender_key,
        creator_key=gift.creator_key,
        sender_salt="0x" + sender_salt.hex(),
        gross=gift.gross,
        creator_amount=gift.creator_amount,
        platform_amount=gift.platform_amount,
        creator_bps=gift.creator_bps,
        status="settled" if gift.status == "settled" else "posted",
        epoch_id=gift.epoch_id,
        created_at=gift.created_at,
    )


def _creator_state(row: CreatorRow) -> CreatorState:
    return CreatorState(id=row.id, kind=row.kind, restricted=row.restricted)


def _new_gift(
    req: GiftRequest, req_hash: str, sender: SenderRow, creator: CreatorRow, parts: Split, posting: lg.Posting
) -> NewGift:
    return NewGift(
        id=req.id,
        sender_id=sender.id,
        creator_id=creator.id,
        sender_key=sender.account_key,
        creator_key=creator.account_key,
        gross=parts.gross,
        creator_amount=parts.creator_amount,
        platform_amount=parts.platform_amount,
        creator_bps=parts.creator_bps,
        request_hash=req_hash,
        posting=posting,
    )


def _new_receipt(g: NewGift, sender_salt: bytes, now: datetime) -> GiftReceipt:
    return GiftReceipt(
        id=g.id,
        sender_id=g.sender_id,
        creator_id=g.creator_id,
        sender_key=g.sender_key,
        creator_key=g.creator_key,
        sender_salt="0x" + sender_salt.hex(),
        gross=g.gross,
        creator_amount=g.creator_amount,
        platform_amount=g.platform_amount,
        creator_bps=g.creator_bps,
        status="posted",
        epoch_id=None,
        created_at=now,
    )


def _update(row: SenderRow, after: SenderState, day: str) -> SenderUpdate:
    """The row's new balance and counters (the recharge counter resets when the day rolled)."""
    recharged = row.recharged_today if row.counter_day == day else 0
    return SenderUpdate(row.id, after.coins, after.gifted_today, recharged, day)


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
        # Two statements and the commit (docs/ledger.md, "Gift hot path"): the sender's row
        # locked together with the creator and the idempotency probe, then one write.
        with self._uow.write() as uow:
            ctx = uow.gift_ledger.context(req.id, req.sender_id, req.creator_id)
            if ctx.existing_hash is not None:
                lg.check_replay("gift id", req.id, ctx.existing_hash, req_hash)
                gift, salt = uow.gift_ledger.existing([req.id])[req.id]
                return receipt(gift, salt), False
            if ctx.sender is None:
                raise NotFound(f"account {req.sender_id} not found")
            if ctx.creator is None:
                raise NotFound(f"account {req.creator_id} not found")
            now = self._clock()
            day = now.astimezone(UTC).date().isoformat()
            before = self._sender_state(ctx.sender, day)
            after = debit_sender(req, before, _creator_state(ctx.creator))
            parts, posting = gift_posting(req, self._rate.creator_bps())
            new = _new_gift(req, req_hash, ctx.sender, ctx.creator, parts, posting)
            uow.gift_ledger.append(new, _update(ctx.sender, after, day), now)
            uow.commit()
            return _new_receipt(new, ctx.sender.salt, now), True

    def _sender_state(self, row: SenderRow, day: str) -> SenderState:
        return SenderState(
            id=row.id,
            kind=row.kind,
            coins=row.coins,
            debt=row.debt,
            restricted=row.restricted,
            gifted_today=gifted_on(day, row.counter_day, row.gifted_today),
            daily_limit=self._limits.gift_limit(row.is_minor),
        )

    def post_batch(self, cmds: list[PostGift]) -> list[tuple[GiftReceipt, bool] | TokenbridgeError]:
        """Each item is its own atomic, idempotent posting; a refused item does not stop the rest.

        Set-based: one transaction for the whole call. The senders are locked once (in id
        order), every item is decided in order against the senders' running balances (so an
        item sees what earlier items spent; a refused item writes nothing), then everything
        accepted is written at once. Same results as posting the items one by one, in order.
        """
        validate_batch_size(len(cmds))
        results: list[tuple[GiftReceipt, bool] | TokenbridgeError | None] = [None] * len(cmds)
        valid: list[tuple[int, GiftRequest, str]] = []
        for i, cmd in enumerate(cmds):
            try:
                req = validate_gift(cmd.id, cmd.sender_id, cmd.creator_id, cmd.amount)
                valid.append((i, req, lg.request_hash(req.body())))
            except TokenbridgeError as exc:
                results[i] = exc
        if valid:
            decided = retry_on_race(lambda: self._post_batch(valid))
            for i, outcome in decided.items():
                results[i] = outcome
        out: list[tuple[GiftReceipt, bool] | TokenbridgeError] = []
        for r in results:
            assert r is not None
            out.append(r)
        return out

    def _post_batch(
        self, items: list[tuple[int, GiftRequest, str]]
    ) -> dict[int, tuple[GiftReceipt, bool] | TokenbridgeError]:
        decided: dict[int, tuple[GiftReceipt, bool] | TokenbridgeError] = {}
        with self._uow.write() as uow:
            gl = uow.gift_ledger
            senders = gl.lock_senders(req.sender_id for _, req, _ in items)
            creators = gl.creators(req.creator_id for _, req, _ in items)
            existing = gl.existing(req.id for _, req, _ in items)
            now = self._clock()
            day = now.astimezone(UTC).date().isoformat()
            bps = self._rate.creator_bps()
            states: dict[str, SenderState] = {}
            created: dict[str, tuple[str, GiftReceipt]] = {}  # gift id -> (hash, receipt), this batch
            new: list[NewGift] = []
            for i, req, req_hash in items:
                try:
                    if req.id in existing:
                        gift, salt = existing[req.id]
                        lg.check_replay("gift id", req.id, gift.request_hash, req_hash)
                        decided[i] = (receipt(gift, salt), False)
                        continue
                    if req.id in created:
                        first_hash, first = created[req.id]
                        lg.check_replay("gift id", req.id, first_hash, req_hash)
                        decided[i] = (first, False)
                        continue
                    sender = senders.get(req.sender_id)
                    if sender is None:
                        raise NotFound(f"account {req.sender_id} not found")
                    creator = creators.get(req.creator_id)
                    if creator is None:
                        raise NotFound(f"account {req.creator_id} not found")
                    state = states.get(sender.id) or self._sender_state(sender, day)
                    after = debit_sender(req, state, _creator_state(creator))
                    parts, posting = gift_posting(req, bps)
                    states[sender.id] = after
                    gift_row = _new_gift(req, req_hash, sender, creator, parts, posting)
                    new.append(gift_row)
                    r = _new_receipt(gift_row, sender.salt, now)
                    created[req.id] = (req_hash, r)
                    decided[i] = (r, True)
                except TokenbridgeError as exc:
                    decided[i] = exc
            if new:
                gl.append_many(new, [_update(senders[sid], st, day) for sid, st in states.items()], now)
                uow.commit()
        return decided

    def get(self, gift_id: str) -> GiftReceipt:
        with self._uow.read() as uow:
            gift = uow.gifts.get(gift_id)
            if gift is None:
                raise NotFound(f"gift {gift_id} not found")
            sender = uow.accounts.get(gift.sender_id)
            assert sender is not None  # foreign key
            return receipt(gift, sender.salt)

    def list(self, *, account_id: str | None = None, limit: int = 50, cursor: str | None = None) -> Page[GiftReceipt]:
        limit = validate_limit(limit)
        with self._uow.read() as uow:
            gifts = uow.gifts.page(account_id, limit, cursor)
            salts: dict[str, bytes] = {}
            items = []
            for g in gifts:
                if g.sender_id not in salts:
                    sender = uow.accounts.get(g.sender_id)
                    assert sender is not None
                    salts[g.sender_id] = sender.salt
                items.append(receipt(g, salts[g.sender_id]))
        return Page(items, items[-1].id if len(items) == limit else None)
