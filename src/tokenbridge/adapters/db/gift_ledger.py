"""The gift hot path in SQL: few round trips, no ORM unit of work.

A gift is checked in Python (`domain.gifts`) against the sender's row read under a lock,
then written in one go. Rows written per gift are the same as every other posting's
(a `transfers` row, its legs, the `gifts` row) plus the sender's balance, so every reader
of transfers and legs (folds, audits, settlement) sees gifts as before.

PostgreSQL, one gift (`context` + `append`, then COMMIT):

1. `WITH s AS (SELECT ... FROM accounts WHERE id = :sender FOR NO KEY UPDATE) SELECT s.*,
   creator, existing gift's hash` -- the lock, the creator and the idempotency probe in
   one statement;
2. one statement of data-modifying CTEs: INSERT transfer, INSERT legs (unnest), INSERT
   gift, UPDATE the sender's coins and daily counter.

A batch (`lock_senders`, `creators`, `existing`, `append_many`): the distinct senders
locked once in id order, creators and existing ids read with `= ANY(:ids)`, then all
transfers, legs, gifts and sender balances written by ONE statement (`json_to_recordset`).

SQLite: the same reads (no `FOR` clause: the writer holds the database lock from BEGIN
IMMEDIATE) and Core inserts (`executemany`); it is in-process, so round trips are cheap.

A concurrent first post of the same gift id loses on the unique `transfers.caller_id`
(IntegrityError): the caller's `retry_on_race` re-runs and finds the winner's row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, bindparam, insert, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from tokenbridge.domain import ledger as lg
from tokenbridge.domain.errors import UnbalancedPosting

from .models import Account, Gift, Transfer, TransferLeg

_ACCOUNTS = Account.__table__
_TRANSFERS = Transfer.__table__
_LEGS = TransferLeg.__table__
_GIFTS = Gift.__table__

_SENDER_COLS = (
    "id, kind, coins, debt, restricted, is_minor, counter_day, recharged_today, gifted_today, account_key, salt"
)


@dataclass(frozen=True, slots=True)
class SenderRow:
    """The sender's row as read under the lock."""

    id: str
    kind: str
    coins: int
    debt: int
    restricted: bool
    is_minor: bool
    counter_day: str
    recharged_today: int
    gifted_today: int
    account_key: str
    salt: bytes


@dataclass(frozen=True, slots=True)
class CreatorRow:
    id: str
    kind: str
    restricted: bool
    account_key: str


@dataclass(frozen=True, slots=True)
class GiftContext:
    """Everything a single gift needs, read in one statement (the sender's row locked)."""

    sender: SenderRow | None
    creator: CreatorRow | None
    existing_hash: str | None


@dataclass(frozen=True, slots=True)
class NewGift:
    """A checked gift to append; `posting` is the domain's balanced posting for it."""

    id: str
    sender_id: str
    creator_id: str
    sender_key: str
    creator_key: str
    gross: int
    creator_amount: int
    platform_amount: int
    creator_bps: int
    request_hash: str
    posting: lg.Posting


@dataclass(frozen=True, slots=True)
class SenderUpdate:
    """The sender's balance and counters after its gifts (written once per sender)."""

    id: str
    coins: int
    gifted_today: int
    recharged_today: int
    counter_day: str


# --- PostgreSQL statements (text: data-modifying CTEs and unnest are PostgreSQL-only) -------

# psycopg directly (server-side prepared after a few runs): SQLAlchemy's per-execute
# machinery cost about as much CPU as the two statements themselves.
_PG_CONTEXT = """
    WITH s AS (
        SELECT id, kind, coins, debt, restricted, is_minor, counter_day, recharged_today, gifted_today,
               account_key, salt
        FROM accounts WHERE id = %(sender)s FOR NO KEY UPDATE
    )
    SELECT s.id, s.kind, s.coins, s.debt, s.restricted, s.is_minor, s.counter_day, s.recharged_today,
           s.gifted_today, s.account_key, s.salt,
           c.id AS c_id, c.kind AS c_kind, c.restricted AS c_restricted, c.account_key AS c_key,
           g.request_hash
    FROM (SELECT 1 AS one) AS one
    LEFT JOIN s ON true
    LEFT JOIN accounts AS c ON c.id = %(creator)s
    LEFT JOIN gifts AS g ON g.id = %(gift)s
"""

_SQLITE_CONTEXT = text(
    """
    SELECT s.id, s.kind, s.coins, s.debt, s.restricted, s.is_minor, s.counter_day, s.recharged_today,
           s.gifted_today, s.account_key, s.salt,
           c.id AS c_id, c.kind AS c_kind, c.restricted AS c_restricted, c.account_key AS c_key,
           g.request_hash
    FROM (SELECT 1 AS one) AS one
    LEFT JOIN accounts AS s ON s.id = :sender
    LEFT JOIN accounts AS c ON c.id = :creator
    LEFT JOIN gifts AS g ON g.id = :gift
    """
)

# One gift, one statement: transfer, legs, gift, sender balance.
_PG_APPEND = """
    WITH t AS (
        INSERT INTO transfers (caller_id, kind, request_hash, created_at)
        VALUES (%(caller_id)s, %(kind)s, %(request_hash)s, %(now)s) RETURNING id
    ), l AS (
        INSERT INTO transfer_legs (transfer_id, account, side, amount, folded)
        SELECT t.id, v.account, v.side, v.amount, v.folded
        FROM t, unnest(CAST(%(leg_account)s AS text[]), CAST(%(leg_side)s AS text[]),
                       CAST(%(leg_amount)s AS bigint[]), CAST(%(leg_folded)s AS boolean[]))
            AS v(account, side, amount, folded)
    ), g AS (
        INSERT INTO gifts (id, transfer_id, sender_id, creator_id, sender_key, creator_key, gross, creator_amount,
                           platform_amount, creator_bps, status, epoch_id, request_hash, created_at)
        SELECT %(id)s, t.id, %(sender_id)s, %(creator_id)s, %(sender_key)s, %(creator_key)s, %(gross)s,
               %(creator_amount)s, %(platform_amount)s, %(creator_bps)s, 'posted', NULL, %(request_hash)s, %(now)s
        FROM t
    ), u AS (
        UPDATE accounts SET coins = %(coins)s, gifted_today = %(gifted_today)s,
                            recharged_today = %(recharged_today)s, counter_day = %(counter_day)s
        WHERE id = %(sender_id)s
    )
    SELECT id FROM t
"""

_PG_LOCK_SENDERS = text(
    "SELECT id, kind, coins, debt, restricted, is_minor, counter_day, recharged_today, gifted_today, account_key, salt"
    " FROM accounts WHERE id = ANY(CAST(:ids AS text[])) ORDER BY id FOR NO KEY UPDATE"
)
_SQLITE_LOCK_SENDERS = text(
    "SELECT id, kind, coins, debt, restricted, is_minor, counter_day, recharged_today, gifted_today, account_key, salt"
    " FROM accounts WHERE id IN :ids ORDER BY id"
).bindparams(bindparam("ids", expanding=True))
_PG_CREATORS = text("SELECT id, kind, restricted, account_key FROM accounts WHERE id = ANY(CAST(:ids AS text[]))")

# A whole batch, one statement. The rows travel as one JSON parameter each (gifts, legs,
# senders): json_to_recordset parses them in C on the server, where dumping ~25,000 array
# elements in psycopg's text format cost more Python CPU than the rest of the batch.
# Transfers are matched back to their gift and legs by caller_id.
_PG_APPEND_MANY = text(
    """
    WITH x AS (
        SELECT * FROM json_to_recordset(CAST(:gifts AS json))
            AS x(id text, sender_id text, creator_id text, sender_key text, creator_key text, gross bigint,
                 creator_amount bigint, platform_amount bigint, creator_bps integer, request_hash text)
    ), t AS (
        INSERT INTO transfers (caller_id, kind, request_hash, created_at)
        SELECT 'gift:' || x.id, :kind, x.request_hash, :now FROM x
        RETURNING id, caller_id
    ), g AS (
        INSERT INTO gifts (id, transfer_id, sender_id, creator_id, sender_key, creator_key, gross, creator_amount,
                           platform_amount, creator_bps, status, epoch_id, request_hash, created_at)
        SELECT x.id, t.id, x.sender_id, x.creator_id, x.sender_key, x.creator_key, x.gross, x.creator_amount,
               x.platform_amount, x.creator_bps, 'posted', NULL, x.request_hash, :now
        FROM x JOIN t ON t.caller_id = 'gift:' || x.id
    ), l AS (
        INSERT INTO transfer_legs (transfer_id, account, side, amount, folded)
        SELECT t.id, v.account, v.side, v.amount, v.folded
        FROM json_to_recordset(CAST(:legs AS json))
            AS v(caller_id text, account text, side text, amount bigint, folded boolean)
        JOIN t ON t.caller_id = v.caller_id
    ), u AS (
        UPDATE accounts AS a
        SET coins = v.coins, gifted_today = v.gifted_today, recharged_today = v.recharged_today,
            counter_day = v.counter_day
        FROM json_to_recordset(CAST(:senders AS json))
            AS v(id text, coins bigint, gifted_today bigint, recharged_today bigint, counter_day text)
        WHERE a.id = v.id
    )
    SELECT count(*) FROM t
    """
)

_UPDATE_SENDER = (
    update(Account)
    .where(Account.id == bindparam("u_id"))
    .values(
        coins=bindparam("u_coins"),
        gifted_today=bindparam("u_gifted"),
        recharged_today=bindparam("u_recharged"),
        counter_day=bindparam("u_day"),
    )
)


def _sender(row: Any) -> SenderRow:
    return SenderRow(
        row[0], row[1], int(row[2]), int(row[3]), bool(row[4]), bool(row[5]), row[6], int(row[7]), int(row[8]),
        row[9], bytes(row[10]),
    )  # fmt: skip


def leg_rows(posting: lg.Posting, sender_coins: str) -> list[tuple[str, str, int, bool]]:
    """(account, side, amount, folded) per leg, by the rule of `Ledger.apply`: the sender's
    coins are on the locked row (folded: the row's cache is updated with them); every other
    leg must be a credit (appended unfolded, folded later) or on an account that may go negative."""
    out: list[tuple[str, str, int, bool]] = []
    for leg in posting.legs:
        if leg.account == sender_coins:
            folded = True
        elif leg.side == "credit" or lg.may_go_negative(leg.account):
            folded = False
        else:
            raise UnbalancedPosting(f"{posting.kind}: debit of {leg.account} needs its row locked")
        out.append((leg.account, leg.side, leg.amount, folded))
    return out


class GiftLedger:
    """SQL for posting gifts, bound to one unit of work's session."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def _conn(self) -> tuple[Connection, bool]:
        conn = self.s.connection()
        return conn, conn.dialect.name == "postgresql"

    # --- one gift ------------------------------------------------------------------------

    def context(self, gift_id: str, sender_id: str, creator_id: str) -> GiftContext:
        """Lock the sender's row and read it, the creator and an existing gift's request hash."""
        conn, pg = self._conn()
        params = {"sender": sender_id, "creator": creator_id, "gift": gift_id}
        if pg:
            with _dbapi(conn).cursor() as cur, _sqlalchemy_errors(_PG_CONTEXT, params):
                row = cur.execute(_PG_CONTEXT, params, prepare=True).fetchone()
        else:
            row = conn.execute(_SQLITE_CONTEXT, params).one()
        assert row is not None
        sender = _sender(row) if row[0] is not None else None
        creator = CreatorRow(row[11], row[12], bool(row[13]), row[14]) if row[11] is not None else None
        return GiftContext(sender, creator, row[15])

    def append(self, gift: NewGift, sender: SenderUpdate, now: datetime) -> None:
        """Write the transfer, its legs, the gift and the sender's new balance."""
        conn, pg = self._conn()
        legs = leg_rows(gift.posting, lg.coins(gift.sender_id))
        if pg:
            params: dict[str, Any] = {
                "caller_id": f"gift:{gift.id}",
                "kind": gift.posting.kind,
                "now": now,
                "leg_account": [leg[0] for leg in legs],
                "leg_side": [leg[1] for leg in legs],
                "leg_amount": [leg[2] for leg in legs],
                "leg_folded": [leg[3] for leg in legs],
                **_gift_params(gift),
                "coins": sender.coins,
                "gifted_today": sender.gifted_today,
                "recharged_today": sender.recharged_today,
                "counter_day": sender.counter_day,
            }
            with _dbapi(conn).cursor() as cur, _sqlalchemy_errors(_PG_APPEND, params):
                cur.execute(_PG_APPEND, params, prepare=True)
            return
        self._append_sqlite(conn, [gift], {gift.id: legs}, [sender], now)

    # --- batches -------------------------------------------------------------------------

    def lock_senders(self, sender_ids: Iterable[str]) -> dict[str, SenderRow]:
        """Lock the senders' rows once, in id order (so concurrent batches cannot deadlock)."""
        ids = sorted(set(sender_ids))
        if not ids:
            return {}
        conn, pg = self._conn()
        if pg:
            rows = conn.execute(_PG_LOCK_SENDERS, {"ids": ids}).all()
        else:
            rows = conn.execute(_SQLITE_LOCK_SENDERS, {"ids": ids}).all()
        return {r[0]: _sender(r) for r in rows}

    def creators(self, creator_ids: Iterable[str]) -> dict[str, CreatorRow]:
        ids = sorted(set(creator_ids))
        if not ids:
            return {}
        conn, pg = self._conn()
        if pg:
            rows = conn.execute(_PG_CREATORS, {"ids": ids}).all()
        else:
            rows = conn.execute(
                select(Account.id, Account.kind, Account.restricted, Account.account_key).where(Account.id.in_(ids))
            ).all()
        return {r[0]: CreatorRow(r[0], r[1], bool(r[2]), r[3]) for r in rows}

    def existing(self, gift_ids: Iterable[str]) -> dict[str, tuple[Gift, bytes]]:
        """Gifts already posted under these ids, with their sender's salt (replays, 409s)."""
        ids = sorted(set(gift_ids))
        if not ids:
            return {}
        rows = self.s.execute(
            select(Gift, Account.salt).join(Account, Account.id == Gift.sender_id).where(Gift.id.in_(ids))
        ).all()
        return {g.id: (g, bytes(salt)) for g, salt in rows}

    def append_many(self, gifts: Sequence[NewGift], senders: Sequence[SenderUpdate], now: datetime) -> None:
        """Write all transfers, legs, gifts and the senders' new balances (one statement on PostgreSQL)."""
        if not gifts:
            return
        conn, pg = self._conn()
        legs = {g.id: leg_rows(g.posting, lg.coins(g.sender_id)) for g in gifts}
        if not pg:
            self._append_sqlite(conn, gifts, legs, senders, now)
            return
        kinds = {g.posting.kind for g in gifts}
        if len(kinds) != 1:  # pragma: no cover - every gift posting has kind "gift"
            raise UnbalancedPosting(f"one batch, one posting kind: {sorted(kinds)}")
        leg_objs = [
            {"caller_id": f"gift:{gift_id}", "account": a, "side": sd, "amount": m, "folded": f}
            for gift_id, rows in legs.items()
            for a, sd, m, f in rows
        ]
        count = conn.execute(
            _PG_APPEND_MANY,
            {
                "kind": kinds.pop(),
                "now": now,
                "gifts": json.dumps([_gift_params(g) for g in gifts]),
                "legs": json.dumps(leg_objs),
                "senders": json.dumps(
                    [
                        {
                            "id": u.id,
                            "coins": u.coins,
                            "gifted_today": u.gifted_today,
                            "recharged_today": u.recharged_today,
                            "counter_day": u.counter_day,
                        }
                        for u in senders
                    ]
                ),
            },
        ).scalar_one()
        if count != len(gifts):  # pragma: no cover - a unique violation raises instead
            raise UnbalancedPosting(f"batch wrote {count} transfers for {len(gifts)} gifts")

    @staticmethod
    def _append_sqlite(
        conn: Connection,
        gifts: Sequence[NewGift],
        legs: dict[str, list[tuple[str, str, int, bool]]],
        senders: Sequence[SenderUpdate],
        now: datetime,
    ) -> None:
        ids = conn.execute(
            insert(Transfer).returning(Transfer.id, sort_by_parameter_order=True),
            [
                {"caller_id": f"gift:{g.id}", "kind": g.posting.kind, "request_hash": g.request_hash, "created_at": now}
                for g in gifts
            ],
        ).scalars().all()  # fmt: skip
        conn.execute(
            insert(TransferLeg),
            [
                {"transfer_id": tid, "account": a, "side": s, "amount": m, "folded": f}
                for g, tid in zip(gifts, ids, strict=True)
                for a, s, m, f in legs[g.id]
            ],
        )
        conn.execute(
            insert(Gift),
            [
                _gift_params(g) | {"transfer_id": tid, "status": "posted", "epoch_id": None, "created_at": now}
                for g, tid in zip(gifts, ids, strict=True)
            ],
        )
        conn.execute(
            _UPDATE_SENDER,
            [
                {
                    "u_id": u.id,
                    "u_coins": u.coins,
                    "u_gifted": u.gifted_today,
                    "u_recharged": u.recharged_today,
                    "u_day": u.counter_day,
                }
                for u in senders
            ],
        )


def _dbapi(conn: Connection) -> Any:
    """The psycopg connection under SQLAlchemy's, inside the same transaction."""
    return conn.connection.dbapi_connection


@contextmanager
def _sqlalchemy_errors(statement: str, params: dict[str, Any]) -> Iterator[None]:
    """Raise driver errors as SQLAlchemy's, as if the statement had gone through it: a lost
    unique-id race must be an `sqlalchemy.exc.IntegrityError` for `retry_on_race`."""
    try:
        yield
    except psycopg.IntegrityError as exc:
        raise sa_exc.IntegrityError(statement, params, exc) from exc
    except psycopg.OperationalError as exc:
        raise sa_exc.OperationalError(statement, params, exc) from exc
    except psycopg.DatabaseError as exc:
        raise sa_exc.DatabaseError(statement, params, exc) from exc


def _gift_params(g: NewGift) -> dict[str, Any]:
    return {
        "id": g.id,
        "sender_id": g.sender_id,
        "creator_id": g.creator_id,
        "sender_key": g.sender_key,
        "creator_key": g.creator_key,
        "gross": g.gross,
        "creator_amount": g.creator_amount,
        "platform_amount": g.platform_amount,
        "creator_bps": g.creator_bps,
        "request_hash": g.request_hash,
    }
