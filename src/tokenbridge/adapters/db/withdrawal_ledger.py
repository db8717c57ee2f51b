"""Withdrawals in SQL: the request's few round trips and the worker's set-based booking.

Rows written are the same as the ORM path's (`Ledger.apply` rules: legs on the locked creator row
are folded into its cache, the credit to `external:chain` is appended unfolded), so every reader
of transfers, legs, holds and the outbox (folds, audits, reconcile) sees withdrawals as before.

Request (`WithdrawalLedger.locked_context`, `place`), PostgreSQL:

1. `SELECT ... FOR NO KEY UPDATE` of the creator's row (its own statement: in READ COMMITTED a
   statement that waited for the lock still reads the other tables as of its start, so the reads
   below must come in a new statement, after the lock is held); sent in one pipeline with BEGIN
   and step 2;
2. one SELECT: the row (kind, key, held, the folded part of its earnings), the linked wallet,
   today's withdrawn units, the creator's booked payout total, an existing withdrawal's hash;
   (only when the folded earnings do not cover the amount, the service runs the ledger's own
   `Ledger.fold` first: the one place that knows every kind of unfolded credit);
3. one statement of data-modifying CTEs: the payout id (`nextval('payout_id_seq')`), INSERT
   transfer + 2 legs, hold, outbox `payout`, withdrawal, UPDATE the row (earnings -> held).

Payout ids on PostgreSQL come from a sequence: increasing in the order requests reach step 3, not
gap-free (a request that fails after taking one leaves a gap; the vault's bitmap does not care, and
nothing counts on consecutive ids). A counter row bumped by every request would make every
request wait for the previous one's COMMIT, whatever its creator. On SQLite the writer holds the
database lock anyway, so the `settlement_counters` row stays (gap-free).

Booking a payout transaction's outcome (`finish_holds`, `update_withdrawals`), PostgreSQL: the
distinct creators locked once in id order, then the holds (`FOR UPDATE`, id order), then ONE
statement: transfers (one per hold, caller id `hold:<id>:posted|voided` as before), their legs,
holds, creator rows, outbox rows, `creator_payout_totals`; and one UPDATE of the withdrawals.

SQLite: the same reads (the writer holds the database lock from BEGIN IMMEDIATE) and Core
statements; it is in-process, so round trips are cheap.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, func, insert, select, text, update

from tokenbridge.domain import ledger as lg
from tokenbridge.domain.errors import IllegalTransition, UnbalancedPosting

from .driver import SessionSql, dbapi, sqlalchemy_errors
from .models import Account, Hold, OutboxItem, Transfer, TransferLeg
from .models_settlement import CreatorPayoutTotal, SettlementCounter, WalletLink
from .models_settlement import Withdrawal as WithdrawalRow

PAYOUT_COUNTER = "payout_id"
HoldTarget = Literal["posted", "voided"]


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The creator's row (read under its lock) and what a withdrawal request checks against."""

    kind: str
    account_key: str
    held: int
    earnings: int  # the folded part (cache) only: `Ledger.fold` first when it does not cover the amount
    wallet: str | None
    today: int  # units of the creator's non-failed withdrawals created in [day_start, day_end)
    posted: int  # creator_payout_totals.posted (0 when no row)
    existing_hash: str | None  # request hash of a withdrawal with this id, if any


@dataclass(frozen=True, slots=True)
class NewWithdrawal:
    id: str
    creator_id: str
    creator_key: str
    to: str
    amount: int
    deadline: int
    signature: str
    digest: str
    signer: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class HoldFinish:
    """Post (payout confirmed) or void (failed for good) one withdrawal's hold."""

    hold_id: str
    creator_id: str
    amount: int
    to: HoldTarget


@dataclass(frozen=True, slots=True)
class WithdrawalUpdate:
    """A withdrawal row's new state after its payout's outcome (every column written)."""

    id: str
    state: str
    chain_tx_id: int | None
    tx_hash: str | None
    block: int | None
    failure_reason: str | None
    finished_at: datetime | None


# --- PostgreSQL (psycopg directly, server-side prepared after a few runs) --------------------

_PG_LOCK = "SELECT id FROM accounts WHERE id = %(creator)s FOR NO KEY UPDATE"

_PG_CONTEXT = """
    SELECT a.kind, a.account_key, a.held, a.earnings,
           (SELECT wallet FROM wallet_links WHERE creator_id = %(creator)s),
           COALESCE((SELECT SUM(amount) FROM withdrawals
                     WHERE creator_id = %(creator)s AND created_at >= %(day0)s AND created_at < %(day1)s
                       AND state <> 'failed'), 0),
           COALESCE((SELECT posted FROM creator_payout_totals WHERE creator_id = %(creator)s), 0),
           (SELECT request_hash FROM withdrawals WHERE id = %(wid)s)
    FROM accounts AS a WHERE a.id = %(creator)s
"""

# The payout id comes from a sequence (migration 0005), not from a counter row: a row bumped by
# every request would serialise all of them (held from the bump to COMMIT) whatever the creator.
_PG_PLACE = """
    WITH c AS (
        SELECT nextval('payout_id_seq') AS seq
    ), t AS (
        INSERT INTO transfers (caller_id, kind, request_hash, created_at)
        SELECT 'hold:withdrawal:' || c.seq || ':reserve', 'hold.reserve', %(hold_hash)s, %(now)s FROM c
        RETURNING id
    ), l AS (
        INSERT INTO transfer_legs (transfer_id, account, side, amount, folded)
        SELECT t.id, v.account, v.side, %(amount)s, true
        FROM t, (VALUES (%(earn)s, 'debit'), (%(held)s, 'credit')) AS v(account, side)
    ), h AS (
        INSERT INTO holds (id, creator_id, amount, state, created_at, updated_at)
        SELECT 'withdrawal:' || c.seq, %(creator)s, %(amount)s, 'reserved', %(now)s, %(now)s FROM c
    ), o AS (
        INSERT INTO outbox (kind, amount, account_id, ref_id, state, created_at, updated_at)
        SELECT 'payout', %(amount)s, %(creator)s, 'withdrawal:' || c.seq, 'pending', %(now)s, %(now)s FROM c
    ), w AS (
        INSERT INTO withdrawals (id, seq, creator_id, creator_key, to_address, amount, deadline, signature, digest,
                                 signer, request_hash, state, hold_id, attempts, created_at, updated_at)
        SELECT %(id)s, c.seq, %(creator)s, %(creator_key)s, %(to)s, %(amount)s, %(deadline)s, %(signature)s,
               %(digest)s, %(signer)s, %(request_hash)s, 'requested', 'withdrawal:' || c.seq, 0, %(now)s, %(now)s
        FROM c
    ), a AS (
        UPDATE accounts SET earnings = earnings - %(amount)s, held = held + %(amount)s WHERE id = %(creator)s
    )
    SELECT seq FROM c
"""

_PG_LOCK_CREATORS = "SELECT id FROM accounts WHERE id = ANY(%(ids)s) ORDER BY id FOR NO KEY UPDATE"
_PG_LOCK_HOLDS = "SELECT id, creator_id, amount, state FROM holds WHERE id = ANY(%(ids)s) ORDER BY id FOR NO KEY UPDATE"

# A batch of hold postings, one statement. Rows travel as JSON (parsed in C on the server).
_PG_FINISH = """
    WITH x AS (
        SELECT * FROM json_to_recordset(CAST(%(holds)s AS json))
            AS x(hold_id text, creator_id text, amount bigint, target text, kind text, request_hash text)
    ), t AS (
        INSERT INTO transfers (caller_id, kind, request_hash, created_at)
        SELECT 'hold:' || x.hold_id || ':' || x.target, x.kind, x.request_hash, %(now)s FROM x
        RETURNING id, caller_id
    ), l AS (
        INSERT INTO transfer_legs (transfer_id, account, side, amount, folded)
        SELECT t.id, v.account, v.side, x.amount, v.folded
        FROM x JOIN t ON t.caller_id = 'hold:' || x.hold_id || ':' || x.target
        CROSS JOIN LATERAL (VALUES
            ('creator:' || x.creator_id || ':held', 'debit', true),
            (CASE WHEN x.target = 'posted' THEN %(chain)s ELSE 'creator:' || x.creator_id || ':earnings' END,
             'credit', x.target <> 'posted')
        ) AS v(account, side, folded)
    ), h AS (
        UPDATE holds SET state = x.target, updated_at = %(now)s FROM x WHERE holds.id = x.hold_id
    ), a AS (
        UPDATE accounts AS acc SET held = acc.held - s.total, earnings = acc.earnings + s.voided
        FROM (SELECT creator_id, SUM(amount) AS total,
                     SUM(CASE WHEN target = 'voided' THEN amount ELSE 0 END) AS voided
              FROM x GROUP BY creator_id) AS s
        WHERE acc.id = s.creator_id
    ), o AS (
        UPDATE outbox SET state = CASE WHEN x.target = 'posted' THEN 'done' ELSE 'voided' END, updated_at = %(now)s
        FROM x WHERE outbox.kind = 'payout' AND outbox.ref_id = x.hold_id
    ), p AS (
        INSERT INTO creator_payout_totals (creator_id, posted)
        SELECT creator_id, SUM(amount) FROM x WHERE target = 'posted' GROUP BY creator_id
        ON CONFLICT (creator_id) DO UPDATE SET posted = creator_payout_totals.posted + EXCLUDED.posted
    )
    SELECT count(*) FROM t
"""

_PG_UPDATE_WITHDRAWALS = """
    UPDATE withdrawals AS w
    SET state = x.state, chain_tx_id = x.chain_tx_id, tx_hash = x.tx_hash, block = x.block,
        failure_reason = x.failure_reason, finished_at = CAST(x.finished_at AS timestamptz), updated_at = %(now)s
    FROM json_to_recordset(CAST(%(rows)s AS json))
        AS x(id text, state text, chain_tx_id bigint, tx_hash text, block bigint, failure_reason text,
             finished_at text)
    WHERE w.id = x.id
"""

# --- SQLite (Core; the writer already holds the database lock) --------------------------------


def _sqlite_context(creator_id: str, withdrawal_id: str, day0: datetime, day1: datetime) -> Any:
    wallet = select(WalletLink.wallet).where(WalletLink.creator_id == creator_id).scalar_subquery()
    today = (
        select(func.coalesce(func.sum(WithdrawalRow.amount), 0))
        .where(
            WithdrawalRow.creator_id == creator_id,
            WithdrawalRow.created_at >= day0,
            WithdrawalRow.created_at < day1,
            WithdrawalRow.state != "failed",
        )
        .scalar_subquery()
    )
    posted = select(CreatorPayoutTotal.posted).where(CreatorPayoutTotal.creator_id == creator_id).scalar_subquery()
    existing = select(WithdrawalRow.request_hash).where(WithdrawalRow.id == withdrawal_id).scalar_subquery()
    return select(
        Account.kind,
        Account.account_key,
        Account.held,
        Account.earnings,
        wallet,
        today,
        func.coalesce(posted, 0),
        existing,
    ).where(Account.id == creator_id)


class WithdrawalLedger(SessionSql):
    """SQL for withdrawals, bound to one unit of work's session."""

    # --- the request ---------------------------------------------------------------------------

    def locked_context(
        self, creator_id: str, withdrawal_id: str, day0: datetime, day1: datetime
    ) -> RequestContext | None:
        """Lock the creator's row, then read what a request checks (None when the account does
        not exist). PostgreSQL: the lock (`FOR NO KEY UPDATE`) and the read are two statements, so
        the read's snapshot is taken after the lock is held, sent in one pipeline with the
        transaction's BEGIN (one round trip for the three). SQLite: the writer holds the lock."""
        conn, pg = self._conn()
        if not pg:
            row = conn.execute(_sqlite_context(creator_id, withdrawal_id, day0, day1)).first()
        else:
            params = {"creator": creator_id, "wid": withdrawal_id, "day0": day0, "day1": day1}
            raw = dbapi(conn)
            with (
                sqlalchemy_errors(_PG_CONTEXT, params),
                raw.pipeline() as pipeline,
                raw.cursor() as lock,
                raw.cursor() as read,
            ):
                lock.execute(_PG_LOCK, {"creator": creator_id}, prepare=True)
                read.execute(_PG_CONTEXT, params, prepare=True)
                pipeline.sync()
                row = read.fetchone()
        if row is None:
            return None
        return RequestContext(
            kind=row[0],
            account_key=row[1],
            held=int(row[2]),
            earnings=int(row[3]),
            wallet=row[4],
            today=int(row[5]),
            posted=int(row[6]),
            existing_hash=row[7],
        )

    def place(self, w: NewWithdrawal, now: datetime) -> int:
        """Reserve the hold (earnings -> held), queue its outbox `payout`, insert the withdrawal;
        the payout id (`seq`: PostgreSQL's `payout_id_seq`, SQLite's `payout_id` counter row).
        The caller checked the amount against the creator's earnings cache under the row lock
        (folding first when the cache was short); the row's CHECK constraints refuse a negative
        balance anyway."""
        conn, pg = self._conn()
        hold_hash = lg.request_hash({"creator": w.creator_id, "amount": w.amount})
        if pg:
            params: dict[str, Any] = {
                "earn": lg.earnings(w.creator_id),
                "held": lg.held(w.creator_id),
                "hold_hash": hold_hash,
                "now": now,
                "creator": w.creator_id,
                "creator_key": w.creator_key,
                "id": w.id,
                "to": w.to,
                "amount": w.amount,
                "deadline": w.deadline,
                "signature": w.signature,
                "digest": w.digest,
                "signer": w.signer,
                "request_hash": w.request_hash,
            }
            with dbapi(conn).cursor() as cur, sqlalchemy_errors(_PG_PLACE, params):
                row = cur.execute(_PG_PLACE, params, prepare=True).fetchone()
            assert row is not None
            return int(row[0])
        return self._place_sqlite(conn, w, hold_hash, now)

    @staticmethod
    def _place_sqlite(conn: Connection, w: NewWithdrawal, hold_hash: str, now: datetime) -> int:
        bumped = conn.execute(
            update(SettlementCounter)
            .where(SettlementCounter.name == PAYOUT_COUNTER)
            .values(next_value=SettlementCounter.next_value + 1)
            .returning(SettlementCounter.next_value)
        ).scalar_one_or_none()
        if bumped is None:
            conn.execute(insert(SettlementCounter).values(name=PAYOUT_COUNTER, next_value=2))
            bumped = 2
        seq = int(bumped) - 1
        earn = lg.earnings(w.creator_id)
        hold_id = f"withdrawal:{seq}"
        tid = conn.execute(
            insert(Transfer)
            .values(caller_id=f"hold:{hold_id}:reserve", kind="hold.reserve", request_hash=hold_hash, created_at=now)
            .returning(Transfer.id)
        ).scalar_one()
        conn.execute(
            insert(TransferLeg),
            [
                {"transfer_id": tid, "account": earn, "side": "debit", "amount": w.amount, "folded": True},
                {"transfer_id": tid, "account": lg.held(w.creator_id), "side": "credit", "amount": w.amount,
                 "folded": True},
            ],
        )  # fmt: skip
        conn.execute(
            insert(Hold).values(
                id=hold_id, creator_id=w.creator_id, amount=w.amount, state="reserved", created_at=now, updated_at=now
            )
        )
        conn.execute(
            insert(OutboxItem).values(
                kind="payout",
                amount=w.amount,
                account_id=w.creator_id,
                ref_id=hold_id,
                state="pending",
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            insert(WithdrawalRow).values(
                id=w.id,
                seq=seq,
                creator_id=w.creator_id,
                creator_key=w.creator_key,
                to_address=w.to,
                amount=w.amount,
                deadline=w.deadline,
                signature=w.signature,
                digest=w.digest,
                signer=w.signer,
                request_hash=w.request_hash,
                state="requested",
                hold_id=hold_id,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            update(Account)
            .where(Account.id == w.creator_id)
            .values(earnings=Account.earnings - w.amount, held=Account.held + w.amount)
        )
        return seq

    def payout_marker(self, creator_id: str) -> tuple[str, int] | None:
        """(account key, booked payout total) of a creator; None when the account does not exist."""
        posted = select(CreatorPayoutTotal.posted).where(CreatorPayoutTotal.creator_id == creator_id).scalar_subquery()
        row = self.s.execute(
            select(Account.account_key, func.coalesce(posted, 0)).where(Account.id == creator_id)
        ).first()
        return None if row is None else (str(row[0]), int(row[1]))

    # --- the worker's booking --------------------------------------------------------------------

    def finish_holds(self, finishes: Sequence[HoldFinish], now: datetime) -> int:
        """Post or void holds, set-based; a hold already in its target state is skipped (booked
        before), one in the other final state is an error. Returns how many were booked now."""
        if not finishes:
            return 0
        by_id = {f.hold_id: f for f in finishes}
        if len(by_id) != len(finishes):
            raise IllegalTransition("a hold appears twice in one booking")
        conn, pg = self._conn()
        creators = sorted({f.creator_id for f in finishes})
        hold_ids = sorted(by_id)
        # lock order as in every posting path: account rows, then hold rows
        if pg:
            with dbapi(conn).cursor() as cur:
                with sqlalchemy_errors(_PG_LOCK_CREATORS, {"ids": creators}):
                    cur.execute(_PG_LOCK_CREATORS, {"ids": creators})
                with sqlalchemy_errors(_PG_LOCK_HOLDS, {"ids": hold_ids}):
                    held_rows = cur.execute(_PG_LOCK_HOLDS, {"ids": hold_ids}).fetchall()
        else:
            held_rows = conn.execute(
                select(Hold.id, Hold.creator_id, Hold.amount, Hold.state).where(Hold.id.in_(hold_ids))
            ).all()
        current = {r[0]: (r[1], int(r[2]), r[3]) for r in held_rows}
        todo: list[HoldFinish] = []
        for hid in hold_ids:
            f = by_id[hid]
            found = current.get(hid)
            if found is None:
                raise IllegalTransition(f"hold {hid} does not exist")
            creator_id, amount, state = found
            if (creator_id, amount) != (f.creator_id, f.amount):
                raise UnbalancedPosting(f"hold {hid} is {amount} of {creator_id}, not {f.amount} of {f.creator_id}")
            if state == f.to:
                continue  # booked before
            if state != lg.HoldState.RESERVED.value:
                raise IllegalTransition(f"hold {hid} is {state}; cannot become {f.to}")
            todo.append(f)
        if not todo:
            return 0
        rows = [
            {
                "hold_id": f.hold_id,
                "creator_id": f.creator_id,
                "amount": f.amount,
                "target": f.to,
                "kind": "hold.post" if f.to == "posted" else "hold.void",
                "request_hash": lg.request_hash({"hold": f.hold_id, "to": f.to}),
            }
            for f in todo
        ]
        if pg:
            params = {"holds": json.dumps(rows), "now": now, "chain": lg.EXTERNAL_CHAIN}
            with dbapi(conn).cursor() as cur, sqlalchemy_errors(_PG_FINISH, params):
                found_count = cur.execute(_PG_FINISH, params).fetchone()
            written = int(found_count[0]) if found_count is not None else 0
            if written != len(todo):  # pragma: no cover - a unique violation raises instead
                raise UnbalancedPosting(f"booking wrote {written} transfers for {len(todo)} holds")
        else:
            self._finish_sqlite(conn, rows, now)
        return len(todo)

    @staticmethod
    def _finish_sqlite(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
        ids = conn.execute(
            insert(Transfer).returning(Transfer.id, sort_by_parameter_order=True),
            [
                {"caller_id": f"hold:{r['hold_id']}:{r['target']}", "kind": r["kind"],
                 "request_hash": r["request_hash"], "created_at": now}
                for r in rows
            ],
        ).scalars().all()  # fmt: skip
        legs: list[dict[str, Any]] = []
        for r, tid in zip(rows, ids, strict=True):
            creator, amount, posted = r["creator_id"], r["amount"], r["target"] == "posted"
            legs.append(
                {"transfer_id": tid, "account": lg.held(creator), "side": "debit", "amount": amount, "folded": True}
            )
            legs.append(
                {
                    "transfer_id": tid,
                    "account": lg.EXTERNAL_CHAIN if posted else lg.earnings(creator),
                    "side": "credit",
                    "amount": amount,
                    "folded": not posted,
                }
            )
        conn.execute(insert(TransferLeg), legs)
        conn.execute(
            update(Hold).where(Hold.id == bindparam("h_id")).values(state=bindparam("h_state"), updated_at=now),
            [{"h_id": r["hold_id"], "h_state": r["target"]} for r in rows],
        )
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # total, voided, posted
        for r in rows:
            t = totals[r["creator_id"]]
            t[0] += r["amount"]
            t[1 if r["target"] == "voided" else 2] += r["amount"]
        conn.execute(
            update(Account)
            .where(Account.id == bindparam("a_id"))
            .values(held=Account.held - bindparam("a_total"), earnings=Account.earnings + bindparam("a_voided")),
            [{"a_id": c, "a_total": t[0], "a_voided": t[1]} for c, t in totals.items()],
        )
        conn.execute(
            update(OutboxItem)
            .where(OutboxItem.kind == "payout", OutboxItem.ref_id == bindparam("o_ref"))
            .values(state=bindparam("o_state"), updated_at=now),
            [{"o_ref": r["hold_id"], "o_state": "done" if r["target"] == "posted" else "voided"} for r in rows],
        )
        posted = {c: t[2] for c, t in totals.items() if t[2]}
        if posted:
            conn.execute(
                text(
                    "INSERT INTO creator_payout_totals (creator_id, posted) VALUES (:c, :p) "
                    "ON CONFLICT (creator_id) DO UPDATE SET posted = creator_payout_totals.posted + excluded.posted"
                ),
                [{"c": c, "p": p} for c, p in posted.items()],
            )

    def update_withdrawals(self, updates: Sequence[WithdrawalUpdate], now: datetime) -> None:
        """Write the withdrawals' new states (one statement on PostgreSQL)."""
        if not updates:
            return
        conn, pg = self._conn()
        if pg:
            rows = [
                {
                    "id": u.id,
                    "state": u.state,
                    "chain_tx_id": u.chain_tx_id,
                    "tx_hash": u.tx_hash,
                    "block": u.block,
                    "failure_reason": u.failure_reason,
                    "finished_at": u.finished_at.isoformat() if u.finished_at is not None else None,
                }
                for u in updates
            ]
            params = {"rows": json.dumps(rows), "now": now}
            with dbapi(conn).cursor() as cur, sqlalchemy_errors(_PG_UPDATE_WITHDRAWALS, params):
                cur.execute(_PG_UPDATE_WITHDRAWALS, params)
            return
        conn.execute(
            update(WithdrawalRow)
            .where(WithdrawalRow.id == bindparam("w_id"))
            .values(
                state=bindparam("w_state"),
                chain_tx_id=bindparam("w_tx"),
                tx_hash=bindparam("w_hash"),
                block=bindparam("w_block"),
                failure_reason=bindparam("w_reason"),
                finished_at=bindparam("w_finished", type_=WithdrawalRow.__table__.c.finished_at.type),
                updated_at=now,
            ),
            [
                {
                    "w_id": u.id,
                    "w_state": u.state,
                    "w_tx": u.chain_tx_id,
                    "w_hash": u.tx_hash,
                    "w_block": u.block,
                    "w_reason": u.failure_reason,
                    "w_finished": u.finished_at,
                }
                for u in updates
            ],
        )


__all__ = [
    "HoldFinish",
    "NewWithdrawal",
    "RequestContext",
    "WithdrawalLedger",
    "WithdrawalUpdate",
]
