"""Post gifts: sender coins -> creator earnings + platform revenue, at the rate in force.

Only the sender's row is locked (its coins must never go negative); the creator's
earnings and the platform's revenue are credited by the gift row itself and folded later
(docs/ledger.md). The rules (validation, limits, split, idempotency) are the pure
`domain.gifts` and `domain.ledger`; the SQL is `adapters.db.gift_ledger` (a few round
trips per call, whatever the number of gifts). A single gift is a batch of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from sqlalchemy.exc import IntegrityError, OperationalError

from tokenbridge.adapters.db.driver import is_deadlock
from tokenbridge.adapters.db.gift_ledger import (
    CreatorRow,
    ExistingGift,
    NewGift,
    SenderDebit,
    SenderRow,
    SenderUpdate,
    check_json_safe,
)
from tokenbridge.adapters.db.models import Gift
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.accounts import DailyLimits
from tokenbridge.domain.errors import NotFound, TokenbridgeError
from tokenbridge.domain.gifts import (
    CreatorState,
    GiftRequest,
    SenderState,
    check_parties,
    debit_sender,
    gift_request_hash,
    gifted_on,
    validate_batch_size,
    validate_gift,
)
from tokenbridge.domain.split import creator_share, validate_bps
from tokenbridge.gc_pause import gc_paused
from tokenbridge.services._common import Clock, retry_on_race, utc_clock, validate_limit
from tokenbridge.services.rates import RateProvider
from tokenbridge.services.views import GiftCommand, GiftReceipt, Page, PostGift

Outcome = tuple[GiftReceipt, bool] | TokenbridgeError
DEADLOCK_RETRIES = 2


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


def _replayed(g: ExistingGift) -> GiftReceipt:
    return GiftReceipt(
        g.id, g.sender_id, g.creator_id, g.sender_key, g.creator_key, "0x" + g.sender_salt.hex(), g.gross,
        g.creator_amount, g.platform_amount, g.creator_bps, "settled" if g.status == "settled" else "posted",
        g.epoch_id, g.created_at,
    )  # fmt: skip


def _update(row: SenderRow, after: SenderState, day: str) -> SenderUpdate:
    """The row's new balance and counters (the recharge counter resets when the day rolled)."""
    recharged = row.recharged_today if row.counter_day == day else 0
    return SenderUpdate(row.id, after.coins, after.gifted_today, recharged, day)


class _SenderChanged(Exception):
    """A sender's row no longer satisfies what the optimistic decision read."""


class _Unprobed(Exception):
    """Decided without reading the gifts already posted, an item was refused: it may be a replay."""


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
        outcome = self._post_all([(0, req, gift_request_hash(req))])[0]
        if isinstance(outcome, TokenbridgeError):
            raise outcome
        return outcome

    def post_batch(self, cmds: Sequence[GiftCommand]) -> list[Outcome]:
        """Each item is its own atomic, idempotent posting; a refused item does not stop the rest.

        Set-based: one transaction for the whole call. The senders are locked once (in id
        order), every item is decided in order against the senders' running balances (so an
        item sees what earlier items spent; a refused item writes nothing), then everything
        accepted is written at once. Same results as posting the items one by one, in order.
        The API also uses it to post concurrent single gifts together (group commit).
        """
        validate_batch_size(len(cmds))
        results: list[Outcome | None] = [None] * len(cmds)
        valid: list[tuple[int, GiftRequest]] = []
        for i, cmd in enumerate(cmds):
            try:
                valid.append((i, validate_gift(cmd.id, cmd.sender_id, cmd.creator_id, cmd.amount)))
            except TokenbridgeError as exc:
                results[i] = exc
        return self._post_valid(results, valid)

    def post_requests(self, reqs: Sequence[GiftRequest]) -> list[Outcome]:
        """`post_batch` for requests whose ids and amount already passed checks at least as
        strict as `validate_gift`'s (the API's request schema: a narrower id pattern, the same
        amount range; tests/api hold the two so). Only `check_parties` is left to do here, which
        saves the second validation of three ids and an amount per gift (about 1 µs)."""
        validate_batch_size(len(reqs))
        with gc_paused():  # thousands of short-lived tuples: see tokenbridge.gc_pause
            results: list[Outcome | None] = [None] * len(reqs)
            valid: list[tuple[int, GiftRequest]] = []
            for i, req in enumerate(reqs):
                try:
                    check_parties(req)
                    valid.append((i, req))
                except TokenbridgeError as exc:
                    results[i] = exc
            return self._post_valid(results, valid)

    def _post_valid(self, results: list[Outcome | None], valid: list[tuple[int, GiftRequest]]) -> list[Outcome]:
        """Post the valid items (`results` holds the refusals of the others, by position)."""
        if valid:
            decided = self._post_all([(i, req, gift_request_hash(req)) for i, req in valid])
            for i, outcome in decided.items():
                results[i] = outcome
        out: list[Outcome] = []
        for r in results:
            assert r is not None
            out.append(r)
        return out

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

    def _post_all(self, items: list[tuple[int, GiftRequest, str]]) -> dict[int, Outcome]:
        """`_post_decided`, run again if PostgreSQL aborted it to break a deadlock. The optimistic
        way writes gifts and then locks senders, the locked way locks senders and then writes
        gifts: two calls posting the same ids, one each way, can wait for each other. The
        aborted one was rolled back whole; its rerun finds the other's gifts (replays)."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                return self._post_decided(items)
            except OperationalError as exc:
                if not is_deadlock(exc) or attempt == DEADLOCK_RETRIES:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _post_decided(self, items: list[tuple[int, GiftRequest, str]]) -> dict[int, Outcome]:
        """Optimistically first (PostgreSQL): decide on the senders' rows as read, without looking
        for gifts already posted under the ids, then write and debit with every rule re-checked
        on the rows (`GiftLedger.append_checked`). An id already taken (a replay, a conflict, a
        lost race) fails that write on the primary key, and an item refused may be the replay of
        a gift posted when the sender could afford it: either way, decide again knowing the
        existing gifts.
        If a sender's row changed so that a rule fails, decide again with the rows locked."""
        try:
            try:
                return self._post_many(items, lock=False, probe=False)
            except (IntegrityError, _Unprobed):
                pass  # rolled back; the attempts below read the gifts that exist
            return retry_on_race(lambda: self._post_many(items, lock=False, probe=True))
        except _SenderChanged:
            return retry_on_race(lambda: self._post_many(items, lock=True, probe=True))

    def _post_many(self, items: list[tuple[int, GiftRequest, str]], *, lock: bool, probe: bool) -> dict[int, Outcome]:
        decided: dict[int, Outcome] = {}
        bps = validate_bps(self._rate.creator_bps())
        with self._uow.write() as uow:
            gl = uow.gift_ledger
            optimistic = not lock and gl.optimistic
            ctx = gl.context(
                (req.sender_id for _, req, _ in items),
                (req.creator_id for _, req, _ in items),
                (req.id for _, req, _ in items),
                lock=not optimistic,
                probe=probe or not optimistic,  # without it, only the checked append is safe
            )
            now = self._clock()
            day = now.astimezone(UTC).date().isoformat()
            states: dict[str, SenderState] = {}
            creators: dict[str, CreatorState] = {}
            created: dict[str, tuple[str, GiftReceipt]] = {}  # gift id -> (hash, receipt), this call
            salts: dict[str, str] = {}  # sender id -> its salt as the receipt shows it
            new: list[NewGift] = []
            for i, req, req_hash in items:
                try:
                    old = ctx.existing.get(req.id)
                    if old is not None:
                        lg.check_replay("gift id", req.id, old.request_hash, req_hash)
                        decided[i] = (_replayed(old), False)
                        continue
                    first = created.get(req.id)
                    if first is not None:
                        lg.check_replay("gift id", req.id, first[0], req_hash)
                        decided[i] = (first[1], False)
                        continue
                    sender = ctx.senders.get(req.sender_id)
                    if sender is None:
                        raise NotFound(f"account {req.sender_id} not found")
                    creator_row = ctx.creators.get(req.creator_id)
                    if creator_row is None:
                        raise NotFound(f"account {req.creator_id} not found")
                    creator = creators.get(creator_row.id)
                    if creator is None:
                        creator = creators[creator_row.id] = _creator_state(creator_row)
                    state = states.get(sender.id) or self._sender_state(sender, day)
                    states[sender.id] = debit_sender(req, state, creator)
                    # the split (domain.split): gross and rate were validated above
                    creator_amount = creator_share(req.amount, bps)
                    g = NewGift(
                        req.id, sender.id, creator_row.id, sender.account_key, creator_row.account_key, req.amount,
                        creator_amount, req.amount - creator_amount, bps, req_hash,
                    )  # fmt: skip
                    new.append(g)
                    salt = salts.get(sender.id)
                    if salt is None:
                        salt = salts[sender.id] = "0x" + sender.salt.hex()
                    r = GiftReceipt(
                        g.id, g.sender_id, g.creator_id, g.sender_key, g.creator_key, salt, g.gross,
                        g.creator_amount, g.platform_amount, bps, "posted", None, now,
                    )  # fmt: skip
                    created[req.id] = (req_hash, r)
                    decided[i] = (r, True)
                except TokenbridgeError as exc:
                    if not ctx.probed:
                        raise _Unprobed from exc  # leaving the unit of work writes nothing
                    decided[i] = exc
            if new:
                # ids passed `validate_id`; the keys come from the rows: check them once per account
                keys = [ctx.senders[sid].account_key for sid in states]
                check_json_safe(*keys, *(c.account_key for c in ctx.creators.values()))
                if optimistic:
                    debits = [
                        SenderDebit(
                            sid, ctx.senders[sid].coins - st.coins, day, st.daily_limit, ctx.senders[sid].is_minor
                        )
                        for sid, st in states.items()
                    ]
                    if not gl.append_checked(new, debits, now):
                        raise _SenderChanged  # leaving the unit of work rolls the gifts back
                else:
                    gl.append(new, [_update(ctx.senders[sid], st, day) for sid, st in states.items()], now)
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
