"""`tokenbridge demo`: the whole story on a local chain, driven through the real entry points.

`DemoSystem` starts what an operator would run: anvil, the contracts (deployed with devnet-friendly
parameters: a payout delay of seconds, not a day), a fresh SQLite file migrated to head, the HTTP API
(the app `tokenbridge serve` builds, under uvicorn in a thread on a free 127.0.0.1 port) and the
worker loop (`build_worker`, in a thread) with short epochs and one confirmation.

`run_story` then drives a scripted population only through those entry points, like the payment
provider, the platform app, creators' wallets and outside verifiers would:

    accounts -> recharges (signed webhooks) -> gifts (single + one batch) -> a refund and a
    chargeback after spending (debt) -> settlement epochs -> wallet links -> a premature withdrawal
    refused -> maturity -> EIP-712 withdrawals to fresh wallets -> payouts confirmed -> one wallet
    deposits back with a permit -> the indexer credits it -> a last round of gifts settles with a
    liabilities commitment -> verification from the chain alone (gift receipts, balance proofs,
    reserve) and reconciliation.

It returns a `DemoResult` (checks, per-creator figures, receipts, gas per kind of transaction,
counts, timings) that the CLI renders; `DemoResult.ok` is true only when every check passed.
Progress goes to a `ProgressSink` (the CLI shows Rich progress bars). No Typer here.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from eth_account import Account

from tokenbridge.domain.errors import TokenbridgeError
from tokenbridge.domain.money import UNITS_PER_COIN

COIN = UNITS_PER_COIN
LOG_NAME = "demo.log"

log = logging.getLogger("tokenbridge.demo")


class DemoFailed(TokenbridgeError):
    code = "demo-failed"
    title = "The demo could not complete"


# --- configuration, progress, results -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoConfig:
    users: int = 50
    creators: int = 10
    recharges_per_user: int = 4
    gifts_per_user: int = 6
    batch_gifts: int = 50  # in one POST /v1/gifts/batch
    sample_receipts: int = 8  # gift receipts verified from the chain
    creator_bps: int = 7_000
    payout_delay: int = 30  # seconds from settlement until earnings are payable; the demo jumps anvil's clock
    split_delay: int = 60
    block_time: float = 0.5
    epoch_seconds: float = 0.5  # an epoch closes once its oldest gift waited this long
    seed: int = 7
    data_dir: Path | None = None  # default: a temporary directory, removed when the demo passes
    tamper_receipt: bool = False  # hidden: tamper one sampled receipt before verifying (must fail)
    timeout: float = 90.0  # per waiting phase

    def validate(self) -> None:
        if self.users < 2 or self.creators < 1:
            raise DemoFailed("the demo needs at least 2 users and 1 creator")
        if not 1 <= self.batch_gifts <= 1000:
            raise DemoFailed("--batch-gifts must be in [1, 1000]")
        if self.recharges_per_user < 1 or self.gifts_per_user < 0 or self.sample_receipts < 1:
            raise DemoFailed("recharges per user and sampled receipts must be at least 1")
        if self.payout_delay < 1 or self.block_time <= 0 or self.epoch_seconds <= 0:
            raise DemoFailed("payout delay, block time and epoch seconds must be positive")


class ProgressSink(Protocol):
    """Where the story reports progress: one phase at a time."""

    def begin(self, phase: str, total: int | None) -> None: ...

    def update(self, completed: int, total: int | None = None) -> None: ...

    def end(self, detail: str) -> None: ...


class NullProgress:
    def begin(self, phase: str, total: int | None) -> None:
        pass

    def update(self, completed: int, total: int | None = None) -> None:
        pass

    def end(self, detail: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class CreatorRow:
    id: str
    gifts: int
    gift_share: int  # sum of the creator amounts of the receipts
    earned_on_chain: int  # CoinVault.earned
    paid_on_chain: int  # CoinVault.paidOut
    ledger_earnings: int  # not yet withdrawn (earnings + held)
    ledger_paid: int  # confirmed withdrawals
    wallet: str
    wallet_tokens: int

    @property
    def matches(self) -> bool:
        return (
            self.earned_on_chain == self.ledger_earnings + self.ledger_paid
            and self.paid_on_chain == self.ledger_paid
            and 0 <= self.earned_on_chain - self.gift_share < max(1, self.gifts)
        )


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    gift_id: str
    epoch_id: int
    gross: int
    creator_amount: int
    bps: int
    ok: bool
    failed: tuple[str, ...]
    tampered: bool = False


@dataclass(frozen=True, slots=True)
class GasRow:
    kind: str
    sender: str
    count: int
    gas: int


@dataclass
class DemoResult:
    checks: list[CheckResult] = field(default_factory=list)
    creators: list[CreatorRow] = field(default_factory=list)
    receipts: list[ReceiptRow] = field(default_factory=list)
    gas: list[GasRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    solvency: dict[str, int | bool] = field(default_factory=dict)
    chargeback: dict[str, int | str] = field(default_factory=dict)
    deployment: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(CheckResult(name, bool(passed), detail))
        if not passed:
            log.error("check failed: %s (%s)", name, detail)
        return bool(passed)


# --- the system -----------------------------------------------------------------------------------


class _ServerThread:
    """A uvicorn server in a daemon thread (signals stay with the main thread)."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            log_config=None,  # keep the demo's logging (to demo.log), do not reconfigure it
            lifespan="on",
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="demo-api", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise DemoFailed("the API server stopped during start-up (see demo.log)")
            if time.monotonic() > deadline:
                raise DemoFailed(f"the API server did not start within {timeout:.0f} s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)


class DemoSystem:
    """anvil + contracts + SQLite + API thread + worker thread; `close()` stops them all (idempotent)."""

    def __init__(self, cfg: DemoConfig, progress: ProgressSink | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.progress = progress or NullProgress()
        self.owns_dir = cfg.data_dir is None
        self.data_dir = cfg.data_dir or Path(tempfile.mkdtemp(prefix="tokenbridge-demo-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / LOG_NAME
        # a fresh story every run: replace what an earlier demo left in --data-dir (only its own files)
        for name in ("tokenbridge.sqlite3", "tokenbridge.sqlite3-wal", "tokenbridge.sqlite3-shm", LOG_NAME):
            (self.data_dir / name).unlink(missing_ok=True)
        self.anvil: Any = None
        self.w3: Any = None
        self.vault: Any = None  # VaultClient (reads, and the holders' own transactions)
        self.deployment: Any = None
        self.settings: Any = None
        self.api: _ServerThread | None = None
        self.api_port = 0
        self.worker: Any = None
        self.worker_thread: threading.Thread | None = None
        self.admin_key = ""
        self.bridge_key = ""
        self.webhook_secret = "whsec_" + secrets.token_hex(16)  # this run's provider secret
        self.environment: dict[str, str | None] = {}  # TOKENBRIDGE_* of the API and the worker
        self._log_handler: logging.Handler | None = None
        self._closed = False
        self.timings: dict[str, float] = {}

    # -- URLs

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def rpc_url(self) -> str:
        return str(self.anvil.rpc_url) if self.anvil is not None else ""

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'tokenbridge.sqlite3'}"

    # -- start

    def start(self) -> DemoSystem:
        started = time.monotonic()
        self._start_logging()
        steps: list[tuple[str, Callable[[], None]]] = [
            ("anvil", self._start_chain),
            ("deploy", self._deploy),
            ("db upgrade", self._migrate),
            ("API", self._start_api),
            ("worker", self._start_worker),
        ]
        self.progress.begin("start: anvil, deploy, db, API, worker", len(steps))
        for i, (name, step) in enumerate(steps):
            log.info("demo: starting %s", name)
            step()
            self.progress.update(i + 1)
        self.progress.end(f"vault {self.deployment.vault}, API {self.api_url}")
        self.timings["start"] = time.monotonic() - started
        return self

    def _start_logging(self) -> None:
        handler = logging.FileHandler(self.log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        for noisy in ("web3", "urllib3", "httpx", "httpcore", "alembic", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._log_handler = handler

    def _start_chain(self) -> None:
        from web3 import Web3

        from tokenbridge.adapters.chain.devnet import start_anvil

        self.anvil = start_anvil(block_time=self.cfg.block_time)
        log.info("anvil pid %d at %s", self.anvil.pid, self.anvil.rpc_url)
        self.w3 = Web3(Web3.HTTPProvider(self.anvil.rpc_url, request_kwargs={"timeout": 30}))

    def _deploy(self) -> None:
        from tokenbridge.adapters.chain.deploy import VaultParams, deploy
        from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS
        from tokenbridge.adapters.chain.vault import VaultClient

        admin, bridge, pauser = (Account.from_key(k) for k in DEV_PRIVATE_KEYS[:3])
        params = VaultParams(
            creator_bps=self.cfg.creator_bps,
            split_delay=self.cfg.split_delay,
            payout_delay=self.cfg.payout_delay,
            maturity_granularity=1,
        )
        self.deployment = deploy(self.w3, admin, admin.address, bridge.address, pauser.address, params)
        records = self.data_dir / "deployments"
        records.mkdir(parents=True, exist_ok=True)
        (records / f"{self.deployment.chain_id}.json").write_text(self.deployment.to_json())
        self.vault = VaultClient(self.w3, self.deployment.vault)
        self.bridge_key = DEV_PRIVATE_KEYS[1]

    def _migrate(self) -> None:
        from tokenbridge.adapters.db import migrate
        from tokenbridge.config import get_settings

        migrate.upgrade(self.database_url)  # what `tokenbridge db upgrade` does
        self.environment = {
            "TOKENBRIDGE_DATABASE_URL": self.database_url,
            "TOKENBRIDGE_RPC_URL": self.rpc_url,
            "TOKENBRIDGE_CHAIN_ID": str(self.deployment.chain_id),
            "TOKENBRIDGE_CONFIRMATIONS": "1",
            "TOKENBRIDGE_DEPLOYMENTS_DIR": str(self.data_dir / "deployments"),
            "TOKENBRIDGE_VAULT_ADDRESS": self.deployment.vault,
            "TOKENBRIDGE_DEPOSIT_START_BLOCK": str(self.deployment.deploy_block),
            "TOKENBRIDGE_BRIDGE_PRIVATE_KEY": self.bridge_key,
            "TOKENBRIDGE_BRIDGE_KEYSTORE": None,
            "TOKENBRIDGE_WEBHOOK_SECRETS": self.webhook_secret,
            "TOKENBRIDGE_CREATOR_BPS": str(self.cfg.creator_bps),
            "TOKENBRIDGE_EPOCH_MAX_AGE_SECONDS": str(self.cfg.epoch_seconds),
            "TOKENBRIDGE_EPOCH_MAX_GIFTS": "10000",
            "TOKENBRIDGE_CHAIN_RATE_CACHE_SECONDS": "1",
            "TOKENBRIDGE_WITHDRAWAL_MIN_AMOUNT": str(COIN),
            "TOKENBRIDGE_WORKER_POLL_SECONDS": "0.2",
            "TOKENBRIDGE_WORKER_FOLD_SECONDS": "2",
            "TOKENBRIDGE_WORKER_LEASE_TTL_SECONDS": "10",
            "TOKENBRIDGE_WORKER_MAX_BACKOFF_SECONDS": "1",
            "TOKENBRIDGE_WORKER_METRICS_PORT": None,
        }
        with _environment(self.environment):
            get_settings.cache_clear()
            self.settings = get_settings()  # validated like every `tokenbridge` process's
        get_settings.cache_clear()

    def _start_api(self) -> None:
        from tokenbridge.adapters.chain.devnet import free_port
        from tokenbridge.bootstrap import build_services
        from tokenbridge.config import get_settings
        from tokenbridge.entrypoints.api.app import create_app_from_env

        # the first admin key, as `tokenbridge apikey create --scope admin` makes it
        services = build_services(self.settings)
        try:
            _, self.admin_key = services.api_keys.create("admin", None)
        finally:
            services.close()
        # the very app factory `tokenbridge serve` runs, with the demo's configuration
        with _environment(self.environment):
            get_settings.cache_clear()
            try:
                app = create_app_from_env()
            finally:
                get_settings.cache_clear()
        if getattr(app.state, "settlement", None) is None:
            raise DemoFailed("the API found no vault to settle against")
        self.api_port = free_port()
        self.api = _ServerThread(app, self.api_port)
        self.api.start()
        ready = httpx.get(f"{self.api_url}/readyz", timeout=10)
        if ready.status_code != 200:
            raise DemoFailed(f"GET /readyz answered {ready.status_code}: {ready.text[:200]}")

    def _start_worker(self) -> None:
        from tokenbridge.entrypoints.worker import build_worker

        self.worker = build_worker(self.settings)
        self.worker_thread = threading.Thread(target=self.worker.run, name="demo-worker", daemon=True)
        self.worker_thread.start()

    # -- stop

    def worker_alive(self) -> bool:
        return self.worker_thread is not None and self.worker_thread.is_alive()

    def close(self, *, keep_data: bool = False) -> None:
        """Stop the worker, the API and anvil (each attempted whatever failed before)."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        if self.worker is not None:
            try:
                self.worker.stop()
                if self.worker_thread is not None:
                    self.worker_thread.join(timeout=15)
            except Exception as exc:  # keep stopping the rest
                errors.append(f"worker: {exc}")
        if self.api is not None:
            try:
                self.api.stop()
            except Exception as exc:  # keep stopping the rest
                errors.append(f"API: {exc}")
        if self.anvil is not None:
            try:
                self.anvil.stop()
            except Exception as exc:  # keep stopping the rest
                errors.append(f"anvil: {exc}")
        if self._log_handler is not None:
            for e in errors:
                log.error("shutdown: %s", e)
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
        if self.owns_dir and not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> DemoSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _environment(changes: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables for the block, then restore them."""
    saved = {k: os.environ.get(k) for k in changes}
    try:
        for k, v in changes.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- the population -------------------------------------------------------------------------------


@dataclass
class _Creator:
    id: str
    key: str
    api_key: str = ""
    wallet: Any = None
    gifts: int = 0
    gift_share: int = 0
    withdrawals: list[str] = field(default_factory=list)
    paid: int = 0


@dataclass
class _User:
    id: str
    key: str
    spendable: int = 0
    payments: list[tuple[str, int]] = field(default_factory=list)


class _Http:
    """The clients of the API: the platform app (app key), the admin, each creator (bound key)."""

    def __init__(self, base_url: str, admin_key: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=30)
        self.admin_key = admin_key
        self.app_key = ""
        self.requests = 0

    def call(
        self, method: str, path: str, *, key: str | None = None, expect: tuple[int, ...] = (200, 201), **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        resp = self.client.request(method, path, headers=headers, **kw)
        self.requests += 1
        if expect and resp.status_code not in expect:
            raise DemoFailed(f"{method} {path} answered {resp.status_code}: {resp.text[:300]}")
        return resp

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.call(method, path, **kw).json()

    def close(self) -> None:
        self.client.close()


class Story:
    """The scripted population, driven through the API, the worker and the chain."""

    def __init__(self, system: DemoSystem, progress: ProgressSink | None = None) -> None:
        self.sys = system
        self.cfg = system.cfg
        self.progress = progress or NullProgress()
        self.rng = random.Random(system.cfg.seed)
        self.run_id = secrets.token_hex(3)
        self.http = _Http(system.api_url, system.admin_key)
        self.result = DemoResult(timings=dict(system.timings))
        self.users: list[_User] = []
        self.creators: list[_Creator] = []
        self.gift_ids: list[str] = []
        self.batch_gift_ids: list[str] = []
        self.final_gift_ids: list[str] = []
        self.counts: Counter[str] = Counter()
        self.recharged = 0
        self.reversed = 0
        self.deposited = 0
        self.deposit_user: _User | None = None
        self.deposit_wallet = ""
        self._n = 0

    # -- helpers

    def uid(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self.run_id}-{self._n}"

    @contextlib.contextmanager
    def phase(self, name: str, total: int | None = None) -> Iterator[list[str]]:
        """A phase: progress bar, timing; the body may append a one-line summary to the yielded list."""
        started = time.monotonic()
        self.progress.begin(name, total)
        log.info("demo phase: %s", name)
        summary: list[str] = []
        yield summary
        self.result.timings[name] = time.monotonic() - started
        self.progress.end("; ".join(summary))

    def wait(self, what: str, done: Callable[[], bool], *, timeout: float | None = None, every: float = 0.2) -> None:
        deadline = time.monotonic() + (timeout or self.cfg.timeout)
        while not done():
            if not self.sys.worker_alive():
                raise DemoFailed(f"the worker thread stopped while waiting for {what} (see {self.sys.log_path})")
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out waiting for {what} (see {self.sys.log_path})")
            time.sleep(every)

    def coins(self, low: float, high: float) -> int:
        return int(self.rng.uniform(low, high) * COIN)

    def _key32(self, key: str) -> bytes:
        return bytes.fromhex(key[2:])

    # -- the story

    def run(self) -> DemoResult:
        try:
            self.keys_and_accounts()
            self.recharges()
            self.gifts()
            self.refund_and_chargeback()
            self.settlement("settlement epochs")
            self.withdrawals()
            self.deposit()
            self.final_round()
            self.verification()
            self.reconcile_and_compare()
            self.gas_report()
        finally:
            self.http.close()
        self.result.counts = dict(self.counts)
        self.result.counts["HTTP requests"] = self.http.requests
        self.result.deployment = {
            "chain_id": self.sys.deployment.chain_id,
            "vault": self.sys.deployment.vault,
            "coin": self.sys.deployment.coin,
            "rpc_url": self.sys.rpc_url,
            "api_url": self.sys.api_url,
            "data_dir": str(self.sys.data_dir),
        }
        return self.result

    def keys_and_accounts(self) -> None:
        total = self.cfg.users + 2 * self.cfg.creators + 1
        with self.phase("API keys and accounts", total) as summary:
            done = 0
            self.http.app_key = self.http.json("POST", "/v1/api-keys", key=self.http.admin_key, json={"scope": "app"})[
                "key"
            ]
            done += 1
            self.progress.update(done)
            for _ in range(self.cfg.users):
                uid = self.uid("user")
                body = self.http.json(
                    "POST", "/v1/accounts", key=self.http.app_key, json={"id": uid, "kind": "user"}, expect=(201,)
                )
                self.users.append(_User(uid, body["account_key"]))
                done += 1
                self.progress.update(done)
            for _ in range(self.cfg.creators):
                cid = self.uid("creator")
                body = self.http.json(
                    "POST", "/v1/accounts", key=self.http.app_key, json={"id": cid, "kind": "creator"}, expect=(201,)
                )
                creator = _Creator(cid, body["account_key"])
                # a key bound to this creator: it may only act on (and read) its own account
                creator.api_key = self.http.json(
                    "POST",
                    "/v1/api-keys",
                    key=self.http.admin_key,
                    json={"scope": "app", "account_id": cid},
                    expect=(201,),
                )["key"]
                self.creators.append(creator)
                done += 2
                self.progress.update(done)
            self.counts["users"] = len(self.users)
            self.counts["creators"] = len(self.creators)
            self.counts["API keys"] = 2 + len(self.creators)
            summary.append(f"{len(self.users)} users, {len(self.creators)} creators, {2 + len(self.creators)} keys")

    def _webhook(self, event_type: str, user: _User, payment_id: str, amount: int) -> dict[str, Any]:
        from tokenbridge.domain.recharge import signature_header

        body = json.dumps(
            {
                "id": self.uid("evt"),
                "type": event_type,
                "data": {"payment_id": payment_id, "account_id": user.id, "amount": amount},
            }
        ).encode()
        header = signature_header([self.sys.webhook_secret.encode()], int(time.time()), body)
        result: dict[str, Any] = self.http.json(
            "POST",
            "/v1/webhooks/payments",
            content=body,
            headers={"Tokenbridge-Signature": header, "Content-Type": "application/json"},
        )
        return result

    def recharge(self, user: _User, amount: int) -> None:
        payment = self.uid("pay")
        result = self._webhook("recharge.succeeded", user, payment, amount)
        if int(result["credited"]) != amount:
            raise DemoFailed(f"recharge {payment}: credited {result['credited']}, expected {amount}")
        user.spendable += amount
        user.payments.append((payment, amount))
        self.recharged += amount
        self.counts["recharges"] += 1

    def recharges(self) -> None:
        total = self.cfg.users * self.cfg.recharges_per_user
        with self.phase("recharges (signed webhooks)", total) as summary:
            plan = [u for u in self.users for _ in range(self.cfg.recharges_per_user)]
            self.rng.shuffle(plan)
            for i, user in enumerate(plan):
                self.recharge(user, self.coins(2, 20))
                self.progress.update(i + 1)
            summary.append(f"{total} recharges, {self.recharged / COIN:,.2f} coins")

    def _gift_body(self, user: _User, creator: _Creator, amount: int) -> dict[str, Any]:
        return {"id": self.uid("gift"), "from": user.id, "to": creator.id, "amount": amount}

    def _booked(self, body: dict[str, Any], receipt: dict[str, Any]) -> None:
        user = next(u for u in self.users if u.id == body["from"])
        creator = next(c for c in self.creators if c.id == body["to"])
        if int(receipt["gross"]) != body["amount"] or (
            int(receipt["creator_amount"]) + int(receipt["platform_amount"]) != body["amount"]
        ):
            raise DemoFailed(f"gift {body['id']}: receipt does not split its gross: {receipt}")
        user.spendable -= body["amount"]
        creator.gifts += 1
        creator.gift_share += int(receipt["creator_amount"])
        self.counts["gifts"] += 1

    def gift(self, user: _User, creator: _Creator, amount: int) -> str:
        body = self._gift_body(user, creator, amount)
        receipt = self.http.json("POST", "/v1/gifts", key=self.http.app_key, json=body, expect=(201,))
        self._booked(body, receipt)
        self.gift_ids.append(body["id"])
        return str(body["id"])

    def _gift_amount(self, user: _User) -> int:
        return min(user.spendable, self.coins(0.1, 3))

    def gifts(self) -> None:
        singles = self.cfg.users * self.cfg.gifts_per_user
        total = singles + self.cfg.batch_gifts
        with self.phase("gifts (POST /v1/gifts + one batch)", total) as summary:
            for i in range(singles):
                user = self.rng.choice(self.users)
                amount = self._gift_amount(user)
                if amount <= 0:
                    self.recharge(user, self.coins(2, 20))
                    amount = self._gift_amount(user)
                self.gift(user, self.rng.choice(self.creators), amount)
                self.progress.update(i + 1)
            bodies: list[dict[str, Any]] = []
            planned: Counter[str] = Counter()
            while len(bodies) < self.cfg.batch_gifts:
                user = self.rng.choice(self.users)
                amount = min(user.spendable - planned[user.id], self.coins(0.1, 1))
                if amount <= 0:
                    self.recharge(user, self.coins(2, 20))
                    continue
                planned[user.id] += amount
                bodies.append(self._gift_body(user, self.rng.choice(self.creators), amount))
            out = self.http.json("POST", "/v1/gifts/batch", key=self.http.app_key, json={"gifts": bodies})
            if out["created"] != len(bodies):
                raise DemoFailed(f"gift batch: {out['created']} of {len(bodies)} created, failed {out['failed']}")
            for body, item in zip(bodies, out["results"], strict=True):
                self._booked(body, item["receipt"])
                self.batch_gift_ids.append(body["id"])
            self.gift_ids += self.batch_gift_ids
            self.counts["gift batches"] += 1
            self.progress.update(total)
            summary.append(f"{singles} single + {len(bodies)} in one batch")

    def refund_and_chargeback(self) -> None:
        with self.phase("refund and chargeback after spending", 2) as summary:
            # a refund the user can still cover: the coins are taken back (and burned on-chain)
            user = max(self.users[:-1], key=lambda u: u.spendable)
            coverable = [(p, a) for p, a in user.payments if a <= user.spendable]
            if not coverable:
                self.recharge(user, self.coins(2, 20))
                coverable = user.payments[-1:]
            payment, amount = coverable[0]
            out = self._webhook("recharge.refunded", user, payment, amount)
            ok = int(out["reversed"]) == amount and int(out["debt_recorded"]) == 0
            self.result.check("refund takes the coins back", ok, f"{user.id}: reversed {out['reversed']}")
            user.spendable -= amount
            self.reversed += amount
            self.counts["refunds"] += 1
            self.progress.update(1)
            # a chargeback after the coins were gifted away: nothing left to take, the rest is debt
            cheat = self.users[-1]
            pay_amount = self.coins(5, 10)
            self.recharge(cheat, pay_amount)
            charged_payment = cheat.payments[-1][0]
            self.gift(cheat, self.creators[0], cheat.spendable)  # spends everything
            out = self._webhook("recharge.chargeback", cheat, charged_payment, pay_amount)
            balances = self.http.json("GET", f"/v1/accounts/{cheat.id}", key=self.http.app_key)["balances"]
            ok = int(out["reversed"]) == 0 and int(out["debt_recorded"]) == pay_amount
            ok = ok and int(balances["debt"]) == pay_amount and int(balances["coins"]) == 0
            self.result.check(
                "chargeback after spending becomes debt",
                ok,
                f"{cheat.id}: debt {balances['debt']}, coins {balances['coins']}",
            )
            self.result.chargeback = {"account": cheat.id, "amount": pay_amount, "debt": int(balances["debt"])}
            self.counts["chargebacks"] += 1
            self.progress.update(2)
            summary.append(f"refund {amount / COIN:,.2f}, chargeback debt {pay_amount / COIN:,.2f} coins")

    def _epochs(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = self.http.json("GET", "/v1/public/epochs", params=params)
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def settlement(self, name: str) -> list[dict[str, Any]]:
        """Wait until every gift posted is in a settled epoch and the newest one's liabilities are committed."""
        total = len(self.gift_ids)
        state: dict[str, Any] = {"epochs": []}
        with self.phase(name, total) as summary:

            def done() -> bool:
                epochs = self._epochs()
                state["epochs"] = epochs
                settled = [e for e in epochs if e["state"] == "settled"]
                count = sum(int(e["gift_count"]) for e in settled)
                self.progress.update(count)
                if count < total or not settled:
                    return False
                newest = max(settled, key=lambda e: int(e["id"]))
                return bool(newest["liabilities_state"] == "committed")

            self.wait(f"settlement of {total} gifts", done, every=0.3)
            settled = [e for e in state["epochs"] if e["state"] == "settled"]
            committed = [e for e in settled if e["liabilities_state"] == "committed"]
            self.counts["epochs settled"] = len(settled)
            self.counts["liabilities commitments"] = len(committed)
            summary.append(f"{len(settled)} epochs settled, {len(committed)} liabilities commitments")
        epochs: list[dict[str, Any]] = state["epochs"]
        return epochs

    def _sign(self, wallet: Any, typed: dict[str, Any]) -> str:
        signed = Account.sign_typed_data(
            wallet.key, domain_data=typed["domain"], message_types=typed["types"], message_data=typed["message"]
        )
        return "0x" + bytes(signed.signature).hex()

    def _withdrawal_body(self, creator: _Creator, amount: int) -> dict[str, Any]:
        from tokenbridge.domain.withdrawal import WithdrawalMessage

        wid = self.uid("wd")
        deadline = int(time.time()) + 3600
        msg = WithdrawalMessage(wid, creator.key, creator.wallet.address, amount, deadline)
        typed = msg.typed_data(self.sys.deployment.chain_id, self.sys.deployment.vault)
        return {
            "id": wid,
            "creator_id": creator.id,
            "to": creator.wallet.address,
            "amount": amount,
            "deadline": deadline,
            "signature": self._sign(creator.wallet, typed),
        }

    def withdrawals(self) -> None:
        from tokenbridge.domain.withdrawal import WalletLinkMessage

        vault = self.sys.vault
        chain_id, vault_address = self.sys.deployment.chain_id, self.sys.deployment.vault
        n = len(self.creators)
        with self.phase("wallet links, maturity, EIP-712 withdrawals", 3 * n) as summary:
            for i, creator in enumerate(self.creators):
                creator.wallet = Account.create()  # a fresh wallet: no history, no ETH
                deadline = int(time.time()) + 3600
                msg = WalletLinkMessage(creator.id, creator.key, creator.wallet.address, deadline)
                body = {
                    "wallet": creator.wallet.address,
                    "deadline": deadline,
                    "signature": self._sign(creator.wallet, msg.typed_data(chain_id, vault_address)),
                }
                self.http.call("POST", f"/v1/creators/{creator.id}/wallet", key=creator.api_key, json=body)
                self.progress.update(i + 1)
            self.counts["wallet links"] = n
            # before maturity the vault refuses to pay, so the API refuses the request
            pending = [(vault.pending(self._key32(c.key)), c) for c in self.creators]
            amount, early = max(pending, key=lambda p: p[0])
            if amount > 0:
                earnings = self._ledger(early)["earnings"]
                resp = self.http.call(
                    "POST",
                    "/v1/withdrawals",
                    key=early.api_key,
                    json=self._withdrawal_body(early, earnings),
                    expect=(),
                )
                refused = resp.status_code == 409 and str(resp.json().get("type", "")).endswith("exceeds-withdrawable")
                self.result.check(
                    "withdrawal before maturity refused",
                    refused,
                    f"{early.id}: {earnings} requested, {amount} not matured -> {resp.status_code}",
                )
            # time passes the maturity period: anvil's clock jumps (a real chain just waits)
            self.sys.anvil.rpc("evm_increaseTime", self.cfg.payout_delay)
            self.sys.anvil.rpc("evm_mine")
            self.counts["seconds of chain time skipped"] = self.cfg.payout_delay
            matured = 0

            def all_matured() -> bool:
                nonlocal matured
                matured = sum(1 for c in self.creators if vault.pending(self._key32(c.key)) == 0)
                self.progress.update(n + matured)
                return matured == n

            self.wait("maturity of the creators' earnings", all_matured, every=0.2)
            for i, creator in enumerate(self.creators):
                key = self._key32(creator.key)
                amount = min(vault.withdrawable(key), self._ledger(creator)["earnings"])
                if amount < COIN:
                    self.progress.update(2 * n + i + 1)
                    continue
                body = self._withdrawal_body(creator, amount)
                self.http.call("POST", "/v1/withdrawals", key=creator.api_key, json=body, expect=(201,))
                creator.withdrawals.append(body["id"])
                self.counts["withdrawals"] += 1
            requested = sum(len(c.withdrawals) for c in self.creators)

            def all_confirmed() -> bool:
                confirmed = 0
                for c in self.creators:
                    for wid in c.withdrawals:
                        view = self.http.json("GET", f"/v1/withdrawals/{wid}", key=c.api_key)
                        if view["state"] == "failed":
                            raise DemoFailed(f"withdrawal {wid} failed: {view['failure_reason']}")
                        confirmed += view["state"] == "confirmed"
                self.progress.update(2 * n + confirmed)
                return confirmed == requested

            self.wait("payouts confirmed", all_confirmed, every=0.4)
            for c in self.creators:
                for wid in c.withdrawals:
                    c.paid += int(self.http.json("GET", f"/v1/withdrawals/{wid}", key=c.api_key)["amount"])
            paid = sum(c.paid for c in self.creators)
            summary.append(f"{requested} withdrawals, {paid / COIN:,.2f} coins paid to fresh wallets")

    def _ledger(self, creator: _Creator) -> dict[str, int]:
        balances = self.http.json("GET", f"/v1/accounts/{creator.id}", key=creator.api_key)["balances"]
        return {k: int(v) for k, v in balances.items()}

    def deposit(self) -> None:
        with self.phase("deposit back with a permit, indexer credits it", 2) as summary:
            payee = max(self.creators, key=lambda c: c.paid)
            if payee.paid < 2 * COIN // 10:
                raise DemoFailed("no creator was paid enough to deposit back")
            user = self.users[0]
            amount = payee.paid // 2
            before = int(self.http.json("GET", f"/v1/accounts/{user.id}", key=self.http.app_key)["balances"]["coins"])
            self.sys.anvil.rpc("anvil_setBalance", payee.wallet.address, hex(10**17))  # gas money for the wallet
            tx = self.sys.vault.deposit_with_permit(self._key32(user.key), amount, account=payee.wallet)
            self.progress.update(1)

            def credited() -> bool:
                coins = self.http.json("GET", f"/v1/accounts/{user.id}", key=self.http.app_key)["balances"]["coins"]
                return int(coins) == before + amount

            self.wait("the deposit to be credited", credited, every=0.3)
            user.spendable += amount
            self.deposited += amount
            self.deposit_user, self.deposit_wallet = user, payee.wallet.address
            self.counts["deposits"] += 1
            self.progress.update(2)
            summary.append(
                f"{amount / COIN:,.2f} coins from {payee.wallet.address[:10]}… to {user.id} (tx gas {tx.gas_used:,})"
            )

    def final_round(self) -> None:
        with self.phase("last gifts settle with a liabilities commitment", len(self.creators)) as summary:
            for i, creator in enumerate(self.creators):
                user = max(self.users, key=lambda u: u.spendable)
                self.final_gift_ids.append(self.gift(user, creator, min(user.spendable, self.coins(0.5, 2))))
                self.progress.update(i + 1)
            summary.append(f"{len(self.creators)} gifts")
        self.settlement("final settlement and commitment")

    def verification(self) -> None:
        from tokenbridge.adapters.chain.reader import Web3ChainReader
        from tokenbridge.services.verify import (
            parse_balance_proof,
            parse_gift_receipt,
            verify_balance_proof,
            verify_gift_receipt,
            verify_reserve,
        )

        reader = Web3ChainReader(self.sys.w3, self.sys.deployment.vault)  # the chain only, no tokenbridge API
        others = [g for g in self.gift_ids if g not in self.batch_gift_ids and g not in self.final_gift_ids]
        sample = [self.batch_gift_ids[0], self.final_gift_ids[-1]]
        sample += self.rng.sample(others, min(len(others), max(0, self.cfg.sample_receipts - len(sample))))
        sample = sample[: self.cfg.sample_receipts]
        with self.phase("verification from the chain", len(sample) + 4) as summary:
            docs: list[dict[str, Any]] = []
            for i, gift_id in enumerate(sample):
                doc = self.http.json("GET", f"/v1/public/gifts/{gift_id}/proof")  # public, no key
                # the sender keeps their salt (from their receipt) to show the gift is theirs
                mine = self.http.json("GET", f"/v1/gifts/{gift_id}", key=self.http.app_key)
                doc["sender"] = {"account_id": mine["from"], "salt": mine["sender_salt"]}
                tampered = self.cfg.tamper_receipt and i == 0
                if tampered:
                    doc = _tamper_split(doc)
                verdict = verify_gift_receipt(parse_gift_receipt(doc), reader)
                g = doc["gift"]
                self.result.receipts.append(
                    ReceiptRow(
                        gift_id,
                        int(doc["epoch_id"]),
                        int(g["gross"]),
                        int(g["creator_amount"]),
                        int(g["creator_bps"]),
                        verdict.ok,
                        tuple(verdict.failed),
                        tampered,
                    )
                )
                docs.append(doc)
                self.progress.update(i + 1)
            rows = self.result.receipts
            good = sum(r.ok for r in rows)
            self.result.check(
                "sampled gift receipts verify from the chain",
                good == len(self.result.receipts),
                f"{good}/{len(self.result.receipts)} verified, epochs {sorted({r.epoch_id for r in rows})}",
            )
            # a copy with the split changed by one unit must fail, in Python and in the vault's own view
            forged = verify_gift_receipt(parse_gift_receipt(_tamper_split(docs[-1])), reader)
            self.result.check(
                "tampered receipt refused (split, vault verifyGift)",
                not forged.ok and "vault_verify_gift" in forged.failed,
                "failed: " + ", ".join(forged.failed),
            )
            self.progress.update(len(sample) + 1)
            # balance proofs from the latest commitment: the user the deposit went to, and a creator
            proofs = 0
            for account in (self.deposit_user or self.users[0], self.creators[0]):
                doc = self.http.json("GET", f"/v1/accounts/{account.id}/balance-proof", key=self.http.admin_key)
                verdict = verify_balance_proof(parse_balance_proof(doc), reader)
                ledger = self.http.json("GET", f"/v1/accounts/{account.id}", key=self.http.admin_key)["balances"]
                in_app = int(ledger["coins"]) + int(ledger["earnings"]) + int(ledger["held"])
                self.result.check(
                    f"balance proof of {account.id} verifies",
                    verdict.ok and int(doc["balance"]) == in_app,
                    f"epoch {doc['epoch_id']}, balance {doc['balance']} (ledger {in_app})"
                    + (f", failed {verdict.failed}" if verdict.failed else ""),
                )
                proofs += 1
                forged_doc = copy.deepcopy(doc)
                forged_doc["balance"] = str(int(doc["balance"]) + 1)
                forged_balance = verify_balance_proof(parse_balance_proof(forged_doc), reader)
                if proofs == 1:
                    self.result.check(
                        "tampered balance proof refused",
                        not forged_balance.ok,
                        "failed: " + ", ".join(forged_balance.failed),
                    )
            self.progress.update(len(sample) + 3)
            reserve = verify_reserve(reader)
            facts = reserve.facts
            self.result.check("reserve covers the committed liabilities (solvent)", reserve.ok, reserve.headline)
            self.result.solvency = {
                "reserve": self.sys.vault.reserve(),
                "committed_total": self.sys.vault.latest_liabilities().total,
                "committed_epoch": self.sys.vault.latest_liabilities().epoch_id,
                "solvent": self.sys.vault.solvent(),
            }
            log.info("reserve verdict facts: %s", facts)
            self.progress.update(len(sample) + 4)
            summary.append(f"{good}/{len(sample)} receipts, {proofs} balance proofs, reserve {reserve.headline}")

    def reconcile_and_compare(self) -> None:
        from tokenbridge.adapters.db.engine import make_engine, session_factories
        from tokenbridge.adapters.db.uow import UnitOfWorkFactory
        from tokenbridge.services.reconcile import ReconcileService

        vault = self.sys.vault
        with self.phase("reconcile ledger and chain", len(self.creators) + len(self.users) + 1) as summary:
            engine = make_engine(self.sys.database_url)
            try:
                report = ReconcileService(UnitOfWorkFactory(*session_factories(engine)), vault).run()
            finally:
                engine.dispose()
            self.result.check(
                "reconcile: ledger and chain agree",
                report.ok,
                f"reserve {report.reserve}, expected {report.expected_reserve}, {report.creators_checked} creators"
                + "".join(f"; {d.check} {d.subject} delta {d.delta:+d}" for d in report.differences[:5]),
            )
            self.result.solvency["ledger_liabilities"] = sum(report.liabilities.values())
            self.progress.update(1)
            rows: list[CreatorRow] = []
            for i, c in enumerate(self.creators):
                key = self._key32(c.key)
                ledger = self._ledger(c)
                rows.append(
                    CreatorRow(
                        id=c.id,
                        gifts=c.gifts,
                        gift_share=c.gift_share,
                        earned_on_chain=vault.earned(key),
                        paid_on_chain=vault.paid_out(key),
                        ledger_earnings=ledger["earnings"] + ledger["held"],
                        ledger_paid=c.paid,
                        wallet=c.wallet.address,
                        wallet_tokens=vault.balance_of(c.wallet.address),
                    )
                )
                self.progress.update(2 + i)
            self.result.creators = rows
            bad = [r.id for r in rows if not r.matches]
            self.result.check(
                "per creator: earned and paid on-chain == the ledger",
                not bad,
                f"{len(rows) - len(bad)}/{len(rows)} match" + (f"; differ: {', '.join(bad)}" if bad else ""),
            )
            paid = sum(r.ledger_paid for r in rows)
            wallets = sum(r.wallet_tokens for r in rows)
            self.result.check(
                "wallets hold their payouts minus the deposit",
                wallets == paid - self.deposited,
                f"wallets {wallets}, paid {paid}, deposited {self.deposited}",
            )
            wrong: list[str] = []
            for j, u in enumerate(self.users):
                coins = int(self.http.json("GET", f"/v1/accounts/{u.id}", key=self.http.app_key)["balances"]["coins"])
                if coins != u.spendable:
                    wrong.append(f"{u.id} {coins} != {u.spendable}")
                self.progress.update(2 + len(self.creators) + j)
            self.result.check(
                "every user's coins == recharges - gifts - refunds + deposits",
                not wrong,
                f"{len(self.users) - len(wrong)}/{len(self.users)} users" + (f"; {wrong[:3]}" if wrong else ""),
            )
            reserve = vault.reserve()
            expected = self.recharged - self.reversed - paid + self.deposited
            self.result.check(
                "reserve == recharged - refunded - paid out + deposited",
                reserve == expected,
                f"reserve {reserve}, expected {expected}",
            )
            supply = vault.total_supply()
            self.result.check(
                "total supply == reserve + tokens in wallets",
                supply == reserve + wallets,
                f"supply {supply}, reserve {reserve}, wallets {wallets}",
            )
            self.result.solvency["expected_reserve"] = expected
            summary.append("ok" if report.ok and not bad and not wrong else "DIFFERENCES")

    def gas_report(self) -> None:
        w3 = self.sys.w3
        vault = self.sys.vault
        start = int(self.sys.deployment.deploy_block)
        head = int(w3.eth.block_number)
        with self.phase("gas from the receipts", head - start + 1) as summary:
            names = {
                self.sys.deployment.admin.lower(): "admin",
                self.sys.deployment.bridge.lower(): "bridge (worker)",
            }
            kinds: dict[tuple[str, str], list[int]] = {}
            txs = 0
            for i, number in enumerate(range(start, head + 1)):
                block = w3.eth.get_block(number, full_transactions=True)
                for tx in block["transactions"]:
                    receipt = w3.eth.get_transaction_receipt(tx["hash"])
                    kind = _tx_kind(vault, tx)
                    sender = names.get(str(tx["from"]).lower(), "creator wallet")
                    kinds.setdefault((kind, sender), []).append(int(receipt["gasUsed"]))
                    txs += 1
                    if receipt["status"] != 1:
                        self.result.check(f"transaction {kind} succeeded", False, bytes(tx["hash"]).hex())
                self.progress.update(i + 1)
            self.result.gas = sorted(
                (GasRow(kind, sender, len(g), sum(g)) for (kind, sender), g in kinds.items()), key=lambda r: -r.gas
            )
            self.counts["transactions"] = txs
            self.counts["blocks"] = head - start + 1
            self.counts["payout txs"] = sum(r.count for r in self.result.gas if r.kind == "payout")
            summary.append(f"{txs} transactions in {head - start + 1} blocks")


def _tamper_split(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy whose creator gets one unit more and the platform one unit less (gross unchanged)."""
    out = copy.deepcopy(doc)
    gift = out["gift"]
    gift["creator_amount"] = str(int(gift["creator_amount"]) + 1)
    gift["platform_amount"] = str(int(gift["platform_amount"]) - 1)
    return out


def _tx_kind(vault: Any, tx: Any) -> str:
    to = tx.get("to")
    if to is None:
        return "deploy CoinVault + CreatorCoin"
    data = bytes(tx["input"])
    for contract in (vault.vault, vault.coin):
        if str(to).lower() != str(contract.address).lower():
            continue
        try:
            fn, _ = contract.decode_function_input(data)
            return str(fn.fn_name)
        except ValueError:
            return "unknown call"
    return "transfer" if not data else "other"


def run_demo(
    cfg: DemoConfig,
    progress: ProgressSink | None = None,
    *,
    hold: Callable[[DemoSystem, DemoResult], None] | None = None,
) -> DemoResult:
    """Start the system, run the story, call `hold(system, result)` (e.g. --keep-running), stop all."""
    system = DemoSystem(cfg, progress)
    keep = False
    try:
        system.start()
        result = Story(system, progress).run()
        keep = cfg.data_dir is not None or not result.ok
        if hold is not None:
            hold(system, result)
        return result
    except TokenbridgeError as exc:
        keep = True  # the log stays for the post-mortem
        log.error("demo failed: %s", exc.detail)
        raise DemoFailed(f"{exc.detail} (logs and database kept in {system.data_dir})") from exc
    except Exception as exc:
        keep = True
        log.exception("demo failed")
        raise DemoFailed(
            f"{type(exc).__name__}: {str(exc)[:300]} (logs and database kept in {system.data_dir})"
        ) from exc
    except BaseException:
        keep = True
        raise
    finally:
        system.close(keep_data=keep)
