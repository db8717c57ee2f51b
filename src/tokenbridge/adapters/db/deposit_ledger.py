"""The deposits indexer's hot path in SQL: a chunk of logs and a page of credits in a few
set-based statements, not a transaction (and ~9 statements) per deposit.

New logs, PostgreSQL (`store_new`): one statement per page of logs inserts every row and, for
the logs the caller plans a credit for (already `confirmations` deep when read), their
transfer, legs and the users' coins, the row `credited` at once. Pages are pipelined (psycopg
pipeline mode), rows travel as one delimited text parameter (see `_lines`). A plain INSERT: a
log that already had a row makes it fail, and the caller rolls back to the general path.

Seen rows, general path (`insert_seen`; SQLite, re-reads): one `INSERT ... ON CONFLICT
(tx_hash, log_index) DO NOTHING RETURNING` per page; what did not come back already had a row,
and the caller handles those few one by one (revive an orphaned row, notice a credited log
that moved).

Credits of `seen` rows (`due_page`, `lock_seen`, `lock_users`, `book`), in one transaction per
page of due deposits:

1. (only when step 3 found a row changed since the page was read, after rolling back) the
   page's deposit rows locked (`FOR UPDATE`, in id order) and re-read, keeping only those
   still `seen` (another worker may have credited one meanwhile);
2. the user accounts whose `account_key` is among theirs locked once each, in id order
   (`FOR NO KEY UPDATE`, as every posting path locks balances), with their coins;
3. ONE statement (PostgreSQL) writing a transfer `deposit:<tx hash>:<log index>` per
   deposit, its two legs (debit `external:chain` unfolded, credit the target: a user's coins
   folded into the locked row, or the suspense account unfolded), the accounts' new coins
   and the rows' `credited` state -- each row only if it is still `seen` in the block it was
   checked in; the count of rows moved tells the caller whether all were (else roll back and
   go through step 1).

The rows written are exactly those of `Ledger.apply` for the same posting, so folds,
audits and reconcile read deposits as before. SQLite: the same reads (no `FOR` clause: the
writer holds the database lock from BEGIN IMMEDIATE) and Core `executemany` writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tokenbridge.domain import ledger as lg

from .driver import SessionSql, dbapi, sqlalchemy_errors
from .models import Account, Transfer, TransferLeg
from .models_deposits import DEPOSIT_CREDITED, DEPOSIT_SEEN, Deposit


class SeenLog(Protocol):
    """What a stored log needs (the chain adapter's `DepositLog` has it)."""

    @property
    def tx_hash(self) -> str: ...
    @property
    def log_index(self) -> int: ...
    @property
    def block_number(self) -> int: ...
    @property
    def block_hash(self) -> str: ...
    @property
    def account_key(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def amount(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DueDeposit:
    """A `seen` deposit row as the crediting pass needs it."""

    id: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    account_key: str
    amount: int


@dataclass(frozen=True, slots=True)
class DepositCredit:
    """One deposit to book: its transfer, the credited ledger account and the user (if any)."""

    deposit_id: int
    block_hash: str  # the block the row was checked in: it is only credited if still there
    tx_hash: str
    log_index: int
    caller_id: str
    request_hash: str
    account: str  # the credited ledger account: user:<id>:coins or the suspense account
    account_id: str | None  # the user, when `account` is their coins (a locked, folded leg)
    amount: int


# A credit `store_new` writes with its log's row: (request hash, credited ledger account,
# user id or None for the suspense account); a plain tuple, one per log of a catch-up.
PlannedCredit = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class LockedUser:
    id: str
    coins: int
    account: str  # its ledger account, user:<id>:coins


# --- PostgreSQL ----------------------------------------------------------------------------

_PG_INSERT_SEEN = text(
    """
    INSERT INTO deposits (vault, tx_hash, log_index, block_number, block_hash, account_key, from_address, amount,
                          state, seen_at, updated_at)
    SELECT :vault, x.tx_hash, x.log_index, x.block_number, x.block_hash, x.account_key, x.from_address, x.amount,
           :state, :now, :now
    FROM json_to_recordset(CAST(:rows AS json))
        AS x(tx_hash text, log_index integer, block_number bigint, block_hash text, account_key text,
             from_address text, amount bigint)
    ON CONFLICT (tx_hash, log_index) DO NOTHING
    RETURNING tx_hash, log_index
    """
)

# Rows travel to PostgreSQL as ONE text parameter, a line per row and comma-separated fields
# (`_lines`), split by `string_to_table` / `string_to_array`: measured on 1,000 rows of
# deposits, 2 us per row client and server together, where `json.dumps` + `json_to_recordset`
# took 13. Every field is a 0x-hex string, an integer, an account id ([A-Za-z0-9._@-]) or a
# ledger account name made of them; `_lines` refuses a row whose field holds a separator
# (`NotDelimitable`), and the caller then takes the general path. An empty field is NULL.
# Each line is split once: `OFFSET 0` keeps the split in its own subquery; flattened into the
# select list, `string_to_array` ran once per field referenced, 11 times a line (measured
# ~4 us of PostgreSQL CPU per deposit, of ~26).

# A page of new logs, one statement (catching up: most are already due when first read): every
# log's row, `credited` at once with its transfer and legs when the caller planned a credit
# for it (an account), else `seen`. A plain INSERT: any log that already had a row (or a
# transfer under its caller_id) is a unique violation, and the caller rolls back and takes the
# general path. Sent with psycopg directly, pages pipelined (psycopg's format: %(name)s).
# Line: tx_hash, log_index, block_number, block_hash, account_key, from_address, amount,
# request_hash, account_id, account (the last three empty for a row stored `seen`).
_PG_STORE = """
    WITH x AS (
        SELECT r.a[1] AS tx_hash, CAST(r.a[2] AS integer) AS log_index, CAST(r.a[3] AS bigint) AS block_number,
               r.a[4] AS block_hash, r.a[5] AS account_key, r.a[6] AS from_address,
               CAST(r.a[7] AS bigint) AS amount, r.a[8] AS request_hash, NULLIF(r.a[9], '') AS account_id,
               NULLIF(r.a[10], '') AS account,
               CASE WHEN r.a[10] <> ''
                    THEN nextval((SELECT CAST(pg_get_serial_sequence('transfers', 'id') AS regclass)))
               END AS transfer_id
        FROM (SELECT string_to_array(line, ',') AS a FROM string_to_table(%(rows)s, E'\\n') AS line OFFSET 0) AS r
    ), i AS (
        INSERT INTO deposits (vault, tx_hash, log_index, block_number, block_hash, account_key, from_address,
                              amount, state, account_id, ledger_account, transfer_id, seen_at, credited_at,
                              updated_at)
        SELECT %(vault)s, x.tx_hash, x.log_index, x.block_number, x.block_hash, x.account_key, x.from_address,
               x.amount, CASE WHEN x.transfer_id IS NULL THEN %(seen)s ELSE %(credited)s END, x.account_id,
               x.account, x.transfer_id, %(now)s, CASE WHEN x.transfer_id IS NULL THEN NULL ELSE %(now)s END, %(now)s
        FROM x
    ), t AS (
        INSERT INTO transfers (id, caller_id, kind, request_hash, created_at)
        SELECT x.transfer_id, 'deposit:' || x.tx_hash || ':' || x.log_index, %(kind)s, x.request_hash, %(now)s
        FROM x WHERE x.transfer_id IS NOT NULL
    ), l AS (
        INSERT INTO transfer_legs (transfer_id, account, side, amount, folded)
        SELECT x.transfer_id, v.account, v.side, x.amount, v.folded
        FROM x CROSS JOIN LATERAL (VALUES (CAST(%(source)s AS text), 'debit', false),
                                          (x.account, 'credit', x.account_id IS NOT NULL))
            AS v(account, side, folded)
        WHERE x.transfer_id IS NOT NULL
    ), u AS (
        UPDATE accounts AS a SET coins = CAST(split_part(v.line, ',', 2) AS bigint)
        FROM string_to_table(%(users)s, E'\\n') AS v(line)
        WHERE a.id = split_part(v.line, ',', 1)
    )
    SELECT count(*) FROM x
    """

_PG_LOCK_SEEN = text(
    "SELECT id, tx_hash, log_index, block_number, block_hash, account_key, amount"
    " FROM deposits WHERE id = ANY(CAST(:ids AS bigint[])) AND state = :state ORDER BY id FOR UPDATE"
)

_PG_LOCK_USERS = text(
    "SELECT id, account_key, coins FROM accounts WHERE account_key = ANY(CAST(:keys AS text[])) AND kind = 'user'"
    " ORDER BY id FOR NO KEY UPDATE"
)

# A page of credits, one statement: transfers, their two legs, the users' coins, the rows.
# The transfers' ids are drawn from their sequence up front (x is materialised once: nextval
# is volatile), so nothing is joined back by caller_id. The sequence is looked up once per
# statement (here and in _PG_STORE), in a scalar subquery (an InitPlan): as a joined one-row
# subquery the planner pulls it up into the select list and resolves the name again for every
# row (measured ~2.5 us of PostgreSQL CPU per deposit, of ~28).
# Line: deposit_id, block_hash, tx_hash, log_index, request_hash, amount, account_id, account.
_PG_BOOK = text(
    """
    WITH x AS (
        SELECT CAST(r.a[1] AS bigint) AS deposit_id, r.a[2] AS block_hash,
               'deposit:' || r.a[3] || ':' || r.a[4] AS caller_id, r.a[5] AS request_hash,
               CAST(r.a[6] AS bigint) AS amount, NULLIF(r.a[7], '') AS account_id, r.a[8] AS account,
               nextval((SELECT CAST(pg_get_serial_sequence('transfers', 'id') AS regclass))) AS transfer_id
        FROM (SELECT string_to_array(line, ',') AS a FROM string_to_table(:credits, E'\\n') AS line OFFSET 0) AS r
    ), t AS (
        INSERT INTO transfers (id, caller_id, kind, request_hash, created_at)
        SELECT x.transfer_id, x.caller_id, :kind, x.request_hash, :now FROM x
    ), l AS (
        INSERT INTO transfer_legs (transfer_id, account, side, amount, folded)
        SELECT x.transfer_id, v.account, v.side, x.amount, v.folded
        FROM x CROSS JOIN LATERAL (VALUES (CAST(:source AS text), 'debit', false),
                                          (x.account, 'credit', x.account_id IS NOT NULL))
            AS v(account, side, folded)
    ), u AS (
        UPDATE accounts AS a SET coins = CAST(split_part(v.line, ',', 2) AS bigint)
        FROM string_to_table(:users, E'\\n') AS v(line)
        WHERE a.id = split_part(v.line, ',', 1)
    ), d AS (
        UPDATE deposits AS dp
        SET state = :credited, credited_at = :now, updated_at = :now, account_id = x.account_id,
            ledger_account = x.account, transfer_id = x.transfer_id
        FROM x
        WHERE dp.id = x.deposit_id AND dp.state = :seen AND dp.block_hash = x.block_hash
        RETURNING 1
    )
    SELECT count(*) FROM d
    """
)

# --- SQLite --------------------------------------------------------------------------------

_SQLITE_LOCK_SEEN = text(
    "SELECT id, tx_hash, log_index, block_number, block_hash, account_key, amount"
    " FROM deposits WHERE id IN :ids AND state = :state ORDER BY id"
).bindparams(bindparam("ids", expanding=True))
_SQLITE_LOCK_USERS = text(
    "SELECT id, account_key, coins FROM accounts WHERE account_key IN :keys AND kind = 'user' ORDER BY id"
).bindparams(bindparam("keys", expanding=True))
_SQLITE_SET_COINS = update(Account).where(Account.id == bindparam("u_id")).values(coins=bindparam("u_coins"))
_SQLITE_CREDIT_ROW = (
    update(Deposit)
    .where(Deposit.id == bindparam("d_id"), Deposit.state == DEPOSIT_SEEN, Deposit.block_hash == bindparam("d_hash"))
    .values(
        state=DEPOSIT_CREDITED,
        credited_at=bindparam("d_now"),
        updated_at=bindparam("d_now"),
        account_id=bindparam("d_account_id"),
        ledger_account=bindparam("d_account"),
        transfer_id=bindparam("d_transfer_id"),
    )
)


_DUE_PAGE = text(
    "SELECT id, tx_hash, log_index, block_number, block_hash, account_key, amount FROM deposits"
    " WHERE vault = :vault AND state = :state AND block_number <= :up_to"
    " AND (block_number > :after_block OR (block_number = :after_block AND log_index > :after_index))"
    " ORDER BY block_number, log_index LIMIT :limit"
)


class NotDelimitable(ValueError):
    """A field would break the line format of the PostgreSQL statements (never for real logs)."""


def _lines(rows: Iterable[str], fields: int) -> str | None:
    """Join pre-formatted rows (`fields` comma-separated fields each) into one parameter;
    None for no rows (string_to_table(NULL) yields none)."""
    out = "\n".join(rows)
    if not out:
        return None
    if out.count(",") != (out.count("\n") + 1) * (fields - 1):
        raise NotDelimitable("a deposit field holds a separator")
    return out


def _store_line(e: SeenLog, c: PlannedCredit | None) -> str:
    if c is None:
        return f"{e.tx_hash},{e.log_index},{e.block_number},{e.block_hash},{e.account_key},{e.sender},{e.amount},,,"
    return (
        f"{e.tx_hash},{e.log_index},{e.block_number},{e.block_hash},{e.account_key},{e.sender},{e.amount},"
        f"{c[0]},{c[2] or ''},{c[1]}"
    )


def _user_lines(coins: dict[str, int]) -> str | None:
    return _lines((f"{k},{v}" for k, v in coins.items()), 2)


def _due(row: Any) -> DueDeposit:
    return DueDeposit(int(row[0]), row[1], int(row[2]), int(row[3]), row[4], row[5], int(row[6]))


class DepositLedger(SessionSql):
    """Set-based SQL of the deposits indexer, bound to one unit of work's session."""

    # --- seen rows -------------------------------------------------------------------------

    def insert_seen(self, vault: str, logs: Sequence[SeenLog], now: datetime) -> set[tuple[str, int]]:
        """Insert a `seen` row per log unless one exists for its (tx hash, log index);
        returns the keys inserted (the others already had a row)."""
        if not logs:
            return set()
        conn, pg = self._conn()
        if pg:
            rows = json.dumps(
                [
                    {
                        "tx_hash": e.tx_hash,
                        "log_index": e.log_index,
                        "block_number": e.block_number,
                        "block_hash": e.block_hash,
                        "account_key": e.account_key,
                        "from_address": e.sender,
                        "amount": e.amount,
                    }
                    for e in logs
                ]
            )
            result = conn.execute(_PG_INSERT_SEEN, {"vault": vault, "state": DEPOSIT_SEEN, "now": now, "rows": rows})
        else:
            stmt = (
                sqlite_insert(Deposit)
                .on_conflict_do_nothing(index_elements=["tx_hash", "log_index"])
                .returning(Deposit.tx_hash, Deposit.log_index)
            )
            result = conn.execute(
                stmt,
                [
                    {
                        "vault": vault,
                        "tx_hash": e.tx_hash,
                        "log_index": e.log_index,
                        "block_number": e.block_number,
                        "block_hash": e.block_hash,
                        "account_key": e.account_key,
                        "from_address": e.sender,
                        "amount": e.amount,
                        "state": DEPOSIT_SEEN,
                        "seen_at": now,
                        "updated_at": now,
                    }
                    for e in logs
                ],
            )
        return {(r[0], int(r[1])) for r in result}

    @property
    def set_based_store(self) -> bool:
        """Whether `store_new` is available (PostgreSQL)."""
        return self._conn()[1]

    def store_new(
        self,
        vault: str,
        pages: Iterable[tuple[Sequence[SeenLog], Sequence[PlannedCredit | None], dict[str, int]]],
        now: datetime,
    ) -> int:
        """PostgreSQL: insert pages of logs none of which has a row yet, each with its planned
        credit (same position in the page's plans) `credited` at once with its transfer and
        legs, a log planned None `seen`; a page's coins (user id -> balance, as in `book`) are
        written with it. Returns the rows inserted. A log that had a row already raises
        `sqlalchemy.exc.IntegrityError` (the caller rolls back).

        The pages go out in psycopg's pipeline mode: the next page is taken from `pages` (the
        caller plans it) while the server executes the previous one. Each page's coins are
        serialised when it is sent, so the caller may keep updating one running dict.
        """
        conn, pg = self._conn()
        if not pg:  # pragma: no cover - callers check `set_based_store`
            raise NotImplementedError("store_new is PostgreSQL-only")
        raw = dbapi(conn)
        sent: list[tuple[int, Any]] = []
        params: dict[str, Any] = {}
        with sqlalchemy_errors(_PG_STORE, params):
            with raw.pipeline():
                for logs, plans, coins in pages:
                    if not logs:
                        continue
                    params = {
                        "vault": vault,
                        "kind": "deposit",
                        "now": now,
                        "seen": DEPOSIT_SEEN,
                        "credited": DEPOSIT_CREDITED,
                        "source": lg.EXTERNAL_CHAIN,
                        "rows": _lines((_store_line(e, c) for e, c in zip(logs, plans, strict=True)), 10),
                        "users": _user_lines(coins),
                    }
                    cur = raw.cursor()
                    cur.execute(_PG_STORE, params)
                    sent.append((len(logs), cur))
            stored = 0
            for n, cur in sent:
                row = cur.fetchone()
                if row is None or int(row[0]) != n:  # pragma: no cover - one row per log or an error
                    raise RuntimeError(f"a page of {n} logs stored {row!r}")
                stored += n
                cur.close()
        return stored

    # --- crediting -------------------------------------------------------------------------

    def due_page(self, vault: str, up_to: int, after: tuple[int, int] | None, limit: int) -> list[DueDeposit]:
        """`seen` rows of blocks <= `up_to`, in (block, log index) order, after `after`."""
        after_block, after_index = after if after is not None else (-1, -1)
        rows = self.s.execute(
            _DUE_PAGE,
            {
                "vault": vault,
                "state": DEPOSIT_SEEN,
                "up_to": up_to,
                "after_block": after_block,
                "after_index": after_index,
                "limit": limit,
            },
        ).all()
        return [_due(r) for r in rows]

    def lock_seen(self, ids: Iterable[int]) -> list[DueDeposit]:
        """Lock these deposit rows (id order) and return those still `seen`, as they are now
        (the careful path of `book`: a row lock per row costs about as much as the credit)."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        conn, pg = self._conn()
        stmt = _PG_LOCK_SEEN if pg else _SQLITE_LOCK_SEEN
        return [_due(r) for r in conn.execute(stmt, {"ids": wanted, "state": DEPOSIT_SEEN}).all()]

    def lock_users(self, account_keys: Iterable[str]) -> dict[str, LockedUser]:
        """The user accounts with these keys, locked once each in id order: key -> (id, coins)."""
        keys = sorted(set(account_keys))
        if not keys:
            return {}
        conn, pg = self._conn()
        stmt = _PG_LOCK_USERS if pg else _SQLITE_LOCK_USERS
        return {r[1]: LockedUser(r[0], int(r[2]), lg.coins(r[0])) for r in conn.execute(stmt, {"keys": keys}).all()}

    def book(self, credits: Sequence[DepositCredit], coins: dict[str, int], now: datetime) -> int:
        """Write each credit's transfer and legs, the users' new coins (`coins`: user id ->
        balance, their rows locked by `lock_users`) and the rows' `credited` state; returns the
        number of rows that moved `seen` -> `credited`.

        A row is only moved if it is still `seen` in the block it was checked in; if fewer than
        all moved (another worker credited one, a rewind orphaned one since the page was read),
        the caller must roll back (the transfers and coins assumed all of them) and retry after
        `lock_seen`, which makes this exact.
        """
        if not credits:
            return 0
        conn, pg = self._conn()
        if pg:
            moved = conn.execute(
                _PG_BOOK,
                {
                    "kind": "deposit",
                    "now": now,
                    "source": lg.EXTERNAL_CHAIN,
                    "seen": DEPOSIT_SEEN,
                    "credited": DEPOSIT_CREDITED,
                    "credits": _lines(
                        (
                            f"{c.deposit_id},{c.block_hash},{c.tx_hash},{c.log_index},{c.request_hash},{c.amount},"
                            f"{c.account_id or ''},{c.account}"
                            for c in credits
                        ),
                        8,
                    ),
                    "users": _user_lines(coins),
                },
            ).scalar_one()
            return int(moved)
        ids = (
            conn.execute(
                insert(Transfer).returning(Transfer.id, sort_by_parameter_order=True),
                [
                    {"caller_id": c.caller_id, "kind": "deposit", "request_hash": c.request_hash, "created_at": now}
                    for c in credits
                ],
            )
            .scalars()
            .all()
        )
        legs: list[dict[str, Any]] = []
        for c, tid in zip(credits, ids, strict=True):
            legs.append(
                {"transfer_id": tid, "account": lg.EXTERNAL_CHAIN, "side": "debit", "amount": c.amount, "folded": False}
            )
            legs.append(
                {
                    "transfer_id": tid,
                    "account": c.account,
                    "side": "credit",
                    "amount": c.amount,
                    "folded": c.account_id is not None,
                }
            )
        conn.execute(insert(TransferLeg), legs)
        if coins:
            conn.execute(_SQLITE_SET_COINS, [{"u_id": k, "u_coins": v} for k, v in coins.items()])
        result = conn.execute(
            _SQLITE_CREDIT_ROW,
            [
                {
                    "d_id": c.deposit_id,
                    "d_hash": c.block_hash,
                    "d_now": now,
                    "d_account_id": c.account_id,
                    "d_account": c.account,
                    "d_transfer_id": tid,
                }
                for c, tid in zip(credits, ids, strict=True)
            ],
        )
        return int(result.rowcount)
