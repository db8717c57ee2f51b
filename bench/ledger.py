"""Ledger throughput: gifts over real HTTP, batch ingestion, and the raw-SQL limit.

Per database (SQLite file and/or a fresh PostgreSQL database `tb_bench_<random>` that is
dropped at the end):

1. `single_http_*`: `tokenbridge serve` in a subprocess on 127.0.0.1; a concurrent
   keep-alive client (asyncio, one connection per in-flight request) posts one gift per
   request to POST /v1/gifts. Rate = created gifts / wall time; p50/p99 per request.
2. `batch_per_s`: the same gifts through POST /v1/gifts/batch (1000 per request).
3. `raw_sql_per_s`: the same rows (the gift row, the sender's balance under a
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

from benchlib import Conn, cpu_seconds, process_tree  # bench/, the script's own folder

ROOT = Path(__file__).resolve().parent.parent
TOKENBRIDGE = str(Path(sys.executable).with_name("tokenbridge"))
WEBHOOK_SECRET = "whsec_bench_only"  # noqa: S105 -- a throwaway database's secret, not a credential
BIG_LIMIT = str(2**62)
GIFT_AMOUNT = 1_000
FUNDS = 10**15
GRACE_S = 2.0  # open loop: requests still queued this long after the phase's end are not sent


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
def server(url: str, workers: int) -> Iterator[tuple[int, int]]:
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
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- a small keep-alive HTTP/1.1 client (less CPU per request than a general client) -----


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


def _summary(
    prefix: str, latencies: list[float], statuses: dict[str, int], errors: int, elapsed: float
) -> dict[str, Any]:
    created = statuses.get("201", 0)
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else 0.0

    return {
        f"{prefix}_per_s": round(created / elapsed, 1),
        f"{prefix}_p50_ms": pct(0.50),
        f"{prefix}_p99_ms": pct(0.99),
        f"{prefix}_max_ms": pct(1.0),
        f"{prefix}_count": created,
        f"{prefix}_requests": len(latencies),
        f"{prefix}_errors": errors,  # connection errors/timeouts, and every non-201 answer (statuses)
        f"{prefix}_statuses": dict(sorted(statuses.items())),
        f"{prefix}_seconds": round(elapsed, 2),
    }


async def single_http(
    port: int, pop: Population, budget: Budget, concurrency: int, rate: float = 0.0, prefix: str = "single_http"
) -> dict[str, Any]:
    """POST /v1/gifts, one gift per request, over `concurrency` keep-alive connections.

    rate == 0: saturation (closed loop: each connection sends its next request when the
    previous answer arrived). rate > 0: open loop at that offered rate; request i is due at
    t0 + i/rate and its latency counts from that due time (so a stalled server cannot hide
    its queue: no coordinated omission); requests still queued GRACE_S after the phase's
    end are not sent and count as errors (`_unsent`). Every request's latency is recorded;
    every connection error and every non-201 answer is counted.
    """
    make = gift_bodies(pop, f"s{secrets.token_hex(3)}")
    n = budget.count if rate <= 0 else min(budget.count, int(rate * budget.seconds))
    bodies = [json.dumps(make(i)).encode() for i in range(n)]  # prepared before the clock starts
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    unsent = [0]
    queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    start = time.perf_counter()
    deadline = start + budget.seconds

    async def feed() -> None:
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((i, due))
        for _ in range(concurrency):
            queue.put_nowait((-1, 0.0))

    async def client(k: int) -> None:
        nonlocal errors
        conn = await Conn.open(port, pop.admin_key)
        try:
            i = k
            while True:
                if rate > 0:
                    i, due = await queue.get()
                    if i < 0:
                        return
                    if time.perf_counter() > deadline + GRACE_S:
                        unsent[0] += 1  # the server fell behind the offered rate: counted, not hidden
                        continue
                else:
                    if i >= n or time.perf_counter() >= deadline:
                        return
                    due = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(conn.post("/v1/gifts", bodies[i]), 30)
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    errors += 1
                    latencies.append(time.perf_counter() - due)
                    conn.close()
                    conn = await Conn.open(port, pop.admin_key)
                    i += concurrency
                    continue
                latencies.append(time.perf_counter() - due)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status != 201:
                    errors += 1
                i += concurrency
        finally:
            conn.close()

    tasks = [client(k) for k in range(concurrency)]
    if rate > 0:
        tasks.append(feed())
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    out = _summary(prefix, latencies, statuses, errors + unsent[0], elapsed)
    if rate > 0:
        out[f"{prefix}_offered_per_s"] = rate
        out[f"{prefix}_unsent"] = unsent[0]
    return out


async def batch_http(port: int, pop: Population, budget: Budget, concurrency: int, size: int) -> dict[str, Any]:
    """Batches of `size` gifts from `concurrency` connections.

    The client is kept cheap, since it shares the machine's two cores with the server and
    PostgreSQL: bodies are written with an f-string (the same JSON `json.dumps` would write for
    these values), and an answer is checked by its counts and by counting its `"status":201`
    items rather than decoded whole. `run_db` then counts the created gifts in the database."""
    tag = f"b{secrets.token_hex(3)}"
    senders, creators = pop.senders, pop.creators
    created = failed = 0
    next_index = 0
    statuses: dict[int, int] = {}

    def body(first: int, n: int) -> bytes:
        items = ", ".join(
            f'{{"id": "{tag}-{i}", "from": "{senders[i % len(senders)]}", '
            f'"to": "{creators[i % len(creators)]}", "amount": {GIFT_AMOUNT}}}'
            for i in range(first, first + n)
        )
        return f'{{"gifts": [{items}]}}'.encode()

    async def client() -> None:
        nonlocal created, failed, next_index
        conn = await Conn.open(port, pop.admin_key)
        try:
            while n := budget.take(size):
                first, next_index = next_index, next_index + n
                status, raw = await conn.post("/v1/gifts/batch", body(first, n))
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    counts = json.loads(b"{" + raw[raw.rindex(b'],"created":') + 2 :])
                    if raw.count(b'"status":201') != counts["created"]:
                        raise SystemExit(f"answer counts {counts} disagree with its items")
                    created += counts["created"]
                    failed += counts["failed"]
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
        "_batch_tag": tag,
    }


def count_gifts(url: str, tag: str) -> int:
    """Gifts in the database whose id starts with `tag-`: what the batch phase created."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(text("SELECT count(*) FROM gifts WHERE id LIKE :p"), {"p": f"{tag}-%"}).scalar_one()
            )
    finally:
        engine.dispose()


# --- the raw-SQL limit ------------------------------------------------------------------


def _sql_gift_rows(pop: Population, i: int, tag: str) -> tuple[str, str, str, int, int, str]:
    from tokenbridge.domain.gifts import validate_gift
    from tokenbridge.domain.ledger import request_hash
    from tokenbridge.domain.split import split

    sender, creator = pop.senders[i % len(pop.senders)], pop.creators[i % len(pop.creators)]
    req = validate_gift(f"{tag}-{i}", sender, creator, GIFT_AMOUNT)
    parts = split(req.amount, 7_000)
    return req.id, sender, creator, parts.creator_amount, parts.platform_amount, request_hash(req.body())


def raw_sql(url: str, pop: Population, budget: Budget, threads: int) -> dict[str, Any]:
    """One transaction per gift: lock sender, read creator, insert the gift row, update sender."""
    tag = f"r{secrets.token_hex(3)}"
    is_pg = url.startswith("postgresql")
    q = (lambda sql: sql.replace("?", "%s")) if is_pg else (lambda sql: sql)
    lock = q(
        "SELECT coins, account_key FROM accounts WHERE id = ? FOR NO KEY UPDATE"
        if is_pg
        else "SELECT coins, account_key FROM accounts WHERE id = ?"
    )
    creator_q = q("SELECT kind, account_key FROM accounts WHERE id = ?")
    upd_sender = q("UPDATE accounts SET coins = coins - ?, gifted_today = gifted_today + ? WHERE id = ?")
    ins_gift = q(
        "INSERT INTO gifts (id, sender_id, creator_id, sender_key, creator_key, gross, creator_amount, "
        "platform_amount, creator_bps, status, epoch_id, request_hash, created_at, ledger_creator_amount, "
        "ledger_platform_amount, creator_folded, platform_folded) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 7000, 'posted', NULL, ?, ?, ?, ?, false, false)"
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
                gift_id, sender, creator, c_amt, p_amt, rhash = _sql_gift_rows(pop, i, tag)
                cur = conn.cursor()
                if not is_pg:
                    cur.execute("BEGIN IMMEDIATE")
                coins, sender_key = cur.execute(lock, (sender,)).fetchone()
                assert coins >= GIFT_AMOUNT
                _, creator_key = cur.execute(creator_q, (creator,)).fetchone()
                ts = now()
                cur.execute(upd_sender, (GIFT_AMOUNT, GIFT_AMOUNT, sender))
                row = (gift_id, sender, creator, sender_key, creator_key, GIFT_AMOUNT, c_amt, p_amt)
                cur.execute(ins_gift, (*row, rhash, ts, c_amt, p_amt))
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


def client_phase(port: int, pop: Population, args: argparse.Namespace, phase: str, rate: float) -> dict[str, Any]:
    """One HTTP phase, run in the separate client process (uvloop when installed)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    cpu0 = time.process_time()
    if phase == "warmup":  # not reported: connections, prepared statements, the key cache
        out = asyncio.run(single_http(port, pop, Budget(500, 5), args.concurrency, prefix="warmup"))
    elif phase == "single":
        out = asyncio.run(single_http(port, pop, Budget(args.count, args.seconds), args.concurrency))
    elif phase == "rate":
        prefix = f"single_at_{rate:g}"
        out = asyncio.run(single_http(port, pop, Budget(10**9, args.seconds), args.concurrency, rate, prefix))
    else:
        budget = Budget(args.batch_count, args.seconds)
        out = asyncio.run(batch_http(port, pop, budget, args.batch_concurrency, args.batch_size))
    out["_client_cpu_s"] = time.process_time() - cpu0
    return out


# --- CPU accounting: what each gift costs the server, PostgreSQL and the client ---------


def cpu_snapshot(server_pid: int, url: str) -> tuple[float, dict[int, float]]:
    """(CPU seconds of the server's process tree, {pid: CPU seconds} of the PostgreSQL
    backends on the bench db).

    Linux /proc only; PostgreSQL must run on this machine (nothing otherwise). Shared
    PostgreSQL processes (WAL writer, checkpointer) are not counted, nor the CPU of a backend
    that exits between two snapshots (pool churn): the PostgreSQL figure is a lower bound."""
    if not Path("/proc/self/stat").exists():
        return 0.0, {}
    server = sum(cpu_seconds(p) for p in process_tree(server_pid))
    pg: dict[int, float] = {}
    if url.startswith("postgresql"):
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(url)
        with psycopg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (u.database,))]
        pg = {p: cpu_seconds(p) for p in pids}
    return server, pg


def run_db(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with database(kind, args.pg_url) as url:
        log(f"[{kind}] seeding {args.senders} senders, {args.creators} creators")
        pop = seed(url, args.senders, args.creators)
        result: dict[str, Any] = {"workers": args.workers, "concurrency": args.concurrency}
        phases = [("warmup", 0.0), ("single", 0.0), *(("rate", r) for r in args.rates), ("batch", 0.0)]
        phases = [(p, r) for p, r in phases if p == "warmup" or p in args.phases]
        with (
            server(url, args.workers) as (port, server_pid),
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
        ):
            for phase, rate in phases:
                log(f"[{kind}] HTTP phase {phase} {rate or ''} (separate client process, <= {args.seconds} s)")
                before = cpu_snapshot(server_pid, url)
                out = pool.submit(client_phase, port, pop, args, phase, rate).result()
                after = cpu_snapshot(server_pid, url)
                client_cpu = out.pop("_client_cpu_s")
                tag = out.pop("_batch_tag", None)
                if tag is not None and count_gifts(url, tag) != out["batch_count"]:
                    raise SystemExit(
                        f"the batch answers reported {out['batch_count']} gifts, the database holds others"
                    )
                if phase == "warmup":
                    continue
                prefix = {"single": "single_http", "batch": "batch"}.get(phase, f"single_at_{rate:g}")
                gifts = out.get(f"{prefix}_count", 0)
                if gifts:
                    out[f"{prefix}_cpu_ms_per_gift"] = {
                        "server": round((after[0] - before[0]) / gifts * 1000, 3),
                        "postgres": round(
                            sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items()) / gifts * 1000, 3
                        ),
                        "client": round(client_cpu / gifts * 1000, 3),
                    }
                result |= out
        if "raw" not in args.phases:
            return result
        log(f"[{kind}] raw SQL, one transaction per gift (<= {args.count} gifts, <= {args.seconds} s)")
        result |= raw_sql(url, pop, Budget(args.count, args.seconds), args.sql_threads if kind == "postgres" else 1)
        log(f"[{kind}] {json.dumps(result)}")
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=15.0, help="wall-time bound per phase")
    ap.add_argument("--count", type=int, default=30_000, help="gift bound for the single and raw-SQL phases")
    ap.add_argument("--batch-count", type=int, default=2_000_000, help="gift bound for the batch phase")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight (single gifts)")
    ap.add_argument(
        "--batch-concurrency", type=int, default=8, help="batches in flight (4 per server worker keep both cores busy)"
    )
    ap.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",") if x],
        default=[500.0, 1000.0, 2000.0],
        help="fixed offered rates (gifts/s) for the open-loop single-gift phases, comma-separated; '' for none",
    )
    ap.add_argument("--workers", type=int, default=2, help="`tokenbridge serve --workers`")
    ap.add_argument("--sql-threads", type=int, default=8, help="connections for the raw-SQL phase (PostgreSQL)")
    ap.add_argument("--senders", type=int, default=256)
    ap.add_argument("--creators", type=int, default=16)
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("TOKENBRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="server on which a throwaway database is created and dropped",
    )
    ap.add_argument(
        "--phases",
        type=lambda v: {x for x in v.split(",") if x},
        default={"single", "rate", "batch", "raw"},
        help="which phases to run, comma-separated among single,rate,batch,raw (default: all)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = ap.parse_args()
    if args.count < 1 or args.batch_count < 1 or args.seconds <= 0:
        ap.error("--count, --batch-count and --seconds must be positive")
    if args.batch_concurrency < 1 or args.batch_size < 1:
        ap.error("--batch-concurrency and --batch-size must be positive")
    unknown = args.phases - {"single", "rate", "batch", "raw"}
    if unknown or not args.phases:
        ap.error(f"--phases: choose among single,rate,batch,raw (got {','.join(sorted(unknown)) or 'none'})")
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
