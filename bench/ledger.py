"""Ledger throughput: gifts over real HTTP, batch ingestion, and the raw-SQL limit.

Per database (SQLite file and/or a fresh PostgreSQL database `tb_bench_<random>` that is
dropped at the end):

1. `single_http_*`: `tokenbridge serve` in a subprocess on 127.0.0.1; a concurrent
   keep-alive client (asyncio, one connection per in-flight request) posts one gift per
   request to POST /v1/gifts. Rate = created gifts / wall time; p50/p99 per request.
2. `batch_per_s`: the same gifts through POST /v1/gifts/batch (1000 per request).
3. `raw_sql_per_s`: the same rows (transfer, three legs, gift, sender balance under a
   row lock) written with plain SQL on the DB-API driver, one transaction per gift, from
   several threads: the ceiling the database itself allows on this machine.

Every phase is bounded by `--count` gifts and `--seconds` of wall time, whichever comes
first. `--json` prints one JSON object on the last line.

    .venv/bin/python bench/ledger.py --db both --seconds 15 --json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import platform
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKENBRIDGE = str(Path(sys.executable).with_name("tokenbridge"))
WEBHOOK_SECRET = "whsec_bench_only"  # noqa: S105 -- a throwaway database's secret, not a credential
BIG_LIMIT = str(2**62)
GIFT_AMOUNT = 1_000
FUNDS = 10**15


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- databases --------------------------------------------------------------------------


@contextmanager
def database(kind: str, pg_server: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"tb_bench_{secrets.token_hex(5)}"
    server = make_url(pg_server).set(drivername="postgresql")
    dsn = server.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    return env | {
        "TOKENBRIDGE_DATABASE_URL": url,
        "TOKENBRIDGE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "TOKENBRIDGE_DAILY_GIFT_LIMIT": BIG_LIMIT,
        "TOKENBRIDGE_DAILY_RECHARGE_LIMIT": BIG_LIMIT,
    }


@dataclass
class Population:
    admin_key: str
    senders: list[str]
    creators: list[str]


def seed(url: str, n_senders: int, n_creators: int) -> Population:
    """Migrate, open accounts, fund senders through signed webhooks, mint an admin key."""
    from tokenbridge.adapters.db import migrate
    from tokenbridge.bootstrap import build_services
    from tokenbridge.config import load_settings

    migrate.upgrade(url)
    settings = load_settings(
        database_url=url, webhook_secrets=WEBHOOK_SECRET, daily_gift_limit=2**62, daily_recharge_limit=2**62
    )
    services = build_services(settings)
    try:
        run = secrets.token_hex(3)
        senders = [f"bu{run}-{i}" for i in range(n_senders)]
        creators = [f"bc{run}-{i}" for i in range(n_creators)]
        for account_id in senders:
            services.accounts.open(account_id, "user")
            body = json.dumps(
                {
                    "id": f"evt-{account_id}",
                    "type": "recharge.succeeded",
                    "data": {"payment_id": f"pay-{account_id}", "account_id": account_id, "amount": FUNDS},
                }
            ).encode()
            t = int(time.time())
            mac = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
            services.payments.handle_webhook(body, f"t={t},v1={mac}")
        for account_id in creators:
            services.accounts.open(account_id, "creator")
        _, admin_key = services.api_keys.create("admin")
        return Population(admin_key, senders, creators)
    finally:
        services.close()


# --- the server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def server(url: str, workers: int) -> Iterator[int]:
    port = free_port()
    cmd = [TOKENBRIDGE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=bench_env(url), cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"tokenbridge serve exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("tokenbridge serve did not become ready")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- a small keep-alive HTTP/1.1 client (less CPU per request than a general client) -----


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, auth: bytes) -> None:
        self.reader, self.writer, self.auth = reader, writer, auth

    @classmethod
    async def open(cls, port: int, key: str) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, f"Authorization: Bearer {key}\r\n".encode())

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        ).encode()
        self.writer.write(head + self.auth + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Budget:
    count: int
    seconds: float

    def __post_init__(self) -> None:
        self.issued = 0
        self.deadline = time.monotonic() + self.seconds

    def take(self, n: int = 1) -> int:
        if self.issued >= self.count or time.monotonic() >= self.deadline:
            return 0
        n = min(n, self.count - self.issued)
        self.issued += n
        return n


def gift_bodies(pop: Population, tag: str) -> Callable[[int], dict[str, Any]]:
    senders, creators = pop.senders, pop.creators

    def make(i: int) -> dict[str, Any]:
        return {
            "id": f"{tag}-{i}",
            "from": senders[i % len(senders)],
            "to": creators[i % len(creators)],
            "amount": GIFT_AMOUNT,
        }

    return make


async def single_http(port: int, pop: Population, budget: Budget, concurrency: int) -> dict[str, Any]:
    make = gift_bodies(pop, f"s{secrets.token_hex(3)}")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**12))

    async def client() -> None:
        conn = await Conn.open(port, pop.admin_key)
        try:
            while budget.take():
                body = json.dumps(make(next(counter))).encode()
                t0 = time.perf_counter()
                status, _ = await conn.post("/v1/gifts", body)
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    created = statuses.get(201, 0)
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    return {
        "single_http_per_s": round(created / elapsed, 1),
        "single_http_p50_ms": round(q[49] * 1000, 2),
        "single_http_p99_ms": round(q[98] * 1000, 2),
        "single_http_count": created,
        "single_http_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "single_http_seconds": round(elapsed, 2),
    }


async def batch_http(port: int, pop: Population, budget: Budget, concurrency: int, size: int) -> dict[str, Any]:
    make = gift_bodies(pop, f"b{secrets.token_hex(3)}")
    created = failed = 0
    next_index = 0
    statuses: dict[int, int] = {}

    async def client() -> None:
        nonlocal created, failed, next_index
        conn = await Conn.open(port, pop.admin_key)
        try:
            while n := budget.take(size):
                first, next_index = next_index, next_index + n
                body = json.dumps({"gifts": [make(i) for i in range(first, first + n)]}).encode()
                status, raw = await conn.post("/v1/gifts/batch", body)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    result = json.loads(raw)
                    created += result["created"]
                    failed += result["failed"]
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "batch_per_s": round(created / elapsed, 1),
        "batch_count": created,
        "batch_failed_items": failed,
        "batch_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "batch_seconds": round(elapsed, 2),
    }


# --- the raw-SQL limit ------------------------------------------------------------------


def _sql_gift_rows(pop: Population, i: int, tag: str) -> tuple[str, str, str, int, int, str, str]:
    from tokenbridge.domain.gifts import gift_posting, validate_gift
    from tokenbridge.domain.ledger import request_hash

    sender, creator = pop.senders[i % len(pop.senders)], pop.creators[i % len(pop.creators)]
    req = validate_gift(f"{tag}-{i}", sender, creator, GIFT_AMOUNT)
    parts, posting = gift_posting(req, 7_000)
    legs = json.dumps([(leg.account, leg.side, leg.amount) for leg in posting.legs])
    return req.id, sender, creator, parts.creator_amount, parts.platform_amount, request_hash(req.body()), legs


def raw_sql(url: str, pop: Population, budget: Budget, threads: int) -> dict[str, Any]:
    """One transaction per gift: lock sender, read creator, insert transfer + 3 legs + gift, update sender."""
    tag = f"r{secrets.token_hex(3)}"
    is_pg = url.startswith("postgresql")
    q = (lambda sql: sql.replace("?", "%s")) if is_pg else (lambda sql: sql)
    lock = q(
        "SELECT coins, account_key FROM accounts WHERE id = ? FOR UPDATE"
        if is_pg
        else "SELECT coins, account_key FROM accounts WHERE id = ?"
    )
    creator_q = q("SELECT kind, account_key FROM accounts WHERE id = ?")
    ins_transfer = q(
        "INSERT INTO transfers (caller_id, kind, request_hash, created_at) VALUES (?, 'gift', ?, ?) RETURNING id"
    )
    ins_leg = q("INSERT INTO transfer_legs (transfer_id, account, side, amount, folded) VALUES (?, ?, ?, ?, ?)")
    upd_sender = q("UPDATE accounts SET coins = coins - ?, gifted_today = gifted_today + ? WHERE id = ?")
    ins_gift = q(
        "INSERT INTO gifts (id, transfer_id, sender_id, creator_id, sender_key, creator_key, gross, creator_amount, "
        "platform_amount, creator_bps, status, epoch_id, request_hash, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 7000, 'posted', NULL, ?, ?)"
    )
    counter = iter(range(10**12))
    counter_lock = threading.Lock()
    done = [0]
    errors: list[str] = []

    def connect() -> Any:
        if is_pg:
            import psycopg
            from sqlalchemy.engine import make_url

            return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def now() -> Any:
        ts = datetime.now(UTC)
        return ts if is_pg else ts.strftime("%Y-%m-%d %H:%M:%S.%f")

    def work() -> None:
        conn = connect()
        try:
            while budget.take():
                with counter_lock:
                    i = next(counter)
                gift_id, sender, creator, c_amt, p_amt, rhash, legs = _sql_gift_rows(pop, i, tag)
                cur = conn.cursor()
                if not is_pg:
                    cur.execute("BEGIN IMMEDIATE")
                coins, sender_key = cur.execute(lock, (sender,)).fetchone()
                assert coins >= GIFT_AMOUNT
                _, creator_key = cur.execute(creator_q, (creator,)).fetchone()
                ts = now()
                transfer_id = cur.execute(ins_transfer, (f"gift:{gift_id}", rhash, ts)).fetchone()[0]
                cur.executemany(
                    ins_leg,
                    [(transfer_id, a, s, amt, a.endswith(":coins")) for a, s, amt in json.loads(legs)],
                )
                cur.execute(upd_sender, (GIFT_AMOUNT, GIFT_AMOUNT, sender))
                row = (gift_id, transfer_id, sender, creator, sender_key, creator_key, GIFT_AMOUNT, c_amt, p_amt)
                cur.execute(ins_gift, (*row, rhash, ts))
                if is_pg:
                    conn.commit()
                else:
                    cur.execute("COMMIT")
                with counter_lock:
                    done[0] += 1
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    start = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    out: dict[str, Any] = {
        "raw_sql_per_s": round(done[0] / elapsed, 1),
        "raw_sql_count": done[0],
        "raw_sql_seconds": round(elapsed, 2),
    }
    if errors:
        out["raw_sql_errors"] = errors[:3]
    return out


# --- main -------------------------------------------------------------------------------


def run_db(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with database(kind, args.pg_url) as url:
        log(f"[{kind}] seeding {args.senders} senders, {args.creators} creators")
        pop = seed(url, args.senders, args.creators)
        result: dict[str, Any] = {"workers": args.workers, "concurrency": args.concurrency}
        with server(url, args.workers) as port:
            log(f"[{kind}] single gifts over HTTP (<= {args.count} gifts, <= {args.seconds} s)")
            result |= asyncio.run(single_http(port, pop, Budget(args.count, args.seconds), args.concurrency))
            log(f"[{kind}] batches of {args.batch_size} (<= {args.batch_count} gifts, <= {args.seconds} s)")
            result |= asyncio.run(
                batch_http(port, pop, Budget(args.batch_count, args.seconds), args.batch_concurrency, args.batch_size)
            )
        log(f"[{kind}] raw SQL, one transaction per gift (<= {args.count} gifts, <= {args.seconds} s)")
        result |= raw_sql(url, pop, Budget(args.count, args.seconds), args.sql_threads if kind == "postgres" else 1)
        log(f"[{kind}] {json.dumps(result)}")
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=15.0, help="wall-time bound per phase")
    ap.add_argument("--count", type=int, default=30_000, help="gift bound for the single and raw-SQL phases")
    ap.add_argument("--batch-count", type=int, default=300_000, help="gift bound for the batch phase")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight (single gifts)")
    ap.add_argument("--batch-concurrency", type=int, default=2, help="batches in flight")
    ap.add_argument("--workers", type=int, default=2, help="`tokenbridge serve --workers`")
    ap.add_argument("--sql-threads", type=int, default=8, help="connections for the raw-SQL phase (PostgreSQL)")
    ap.add_argument("--senders", type=int, default=256)
    ap.add_argument("--creators", type=int, default=16)
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("TOKENBRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="server on which a throwaway database is created and dropped",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = ap.parse_args()
    if args.count < 1 or args.batch_count < 1 or args.seconds <= 0:
        ap.error("--count, --batch-count and --seconds must be positive")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine skews every number
    results = {kind: run_db(kind, args) for kind in kinds}
    report = {
        "bench": "ledger",
        "cpus": os.cpu_count(),
        "loadavg_1m_at_start": load_at_start,
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        **results,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
