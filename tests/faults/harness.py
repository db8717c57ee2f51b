"""Whole-system fault harness: a real anvil, the real `tokenbridge` processes, real users.

Everything is driven the way an operator and users would drive it:

* the operator runs `tokenbridge deploy`, `tokenbridge db upgrade`, `tokenbridge apikey create`,
  `tokenbridge serve` and `tokenbridge worker` as subprocesses (cwd = a private work dir, so no
  `.env` of the checkout leaks in), and `tokenbridge reconcile` / `tokenbridge status` at the end;
* the payment provider posts signed webhooks; the app posts accounts and gifts over HTTP;
* creators link wallets and sign EIP-712 withdrawals with fresh eth-account keys; holders send
  `deposit` transactions from those wallets to the vault themselves.

Faults: `kill -9` of the worker's process group at random moments (`WorkerKiller`), and a graceful
stop of anvil with `--state` (it dumps the chain on exit and loads it on start) followed by a
restart on the same port (`BridgeSystem.restart_chain`).

`Population` keeps the model of what every account and wallet must hold; `Traffic` drives it
through a `TrafficPlan`; `converge` waits until `find_problems` (the model vs the API vs the vault
vs the worker's transaction records) finds nothing, then requires `tokenbridge reconcile` and
`tokenbridge status` to agree, and returns a `FinalReport` (or fails with every discrepancy).

PostgreSQL: with TOKENBRIDGE_TEST_POSTGRES_URL set, `postgres_database()` creates
`tb_fault_<random>` and drops it at the end. Only 127.0.0.1 is ever contacted.

The module imports no pytest, so `bench/bridge.py` reuses it (`sys.path` += tests/).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3Exception

from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil, free_port, start_anvil
from tokenbridge.domain.errors import ChainError
from tokenbridge.domain.recharge import signature_header

ROOT = Path(__file__).resolve().parents[2]
TOKENBRIDGE = str(Path(sys.executable).with_name("tokenbridge"))
POSTGRES_ENV = "TOKENBRIDGE_TEST_POSTGRES_URL"
WEBHOOK_SECRET = "whsec_fault_harness"  # a throwaway database's secret, not a credential
CREATOR_BPS = 7_000
COIN = 10**6

ADMIN = Account.from_key(DEV_PRIVATE_KEYS[0])  # deployer = admin (`tokenbridge deploy --dev`)
BRIDGE = Account.from_key(DEV_PRIVATE_KEYS[1])  # the worker's hot key, used by nobody else
PAUSER = Account.from_key(DEV_PRIVATE_KEYS[2])


# what a client sees while the node is down: the connection is refused (web3 retries, then raises)
# raw web3 calls raise the transport's errors; VaultClient reads translate them into ChainError
CHAIN_DOWN = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, ChainError)


def log(msg: str) -> None:
    print(f"[harness {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- missing pieces ---------------------------------------------------------------------------

# What the whole-system tests need from other parts of the tree; `missing_pieces()` names what is
# absent so a test can skip with a precise reason instead of passing silently.
REQUIRED_MODULES: dict[str, str] = {
    "src/tokenbridge/entrypoints/worker.py": "`tokenbridge worker` loop",
    "src/tokenbridge/entrypoints/cli_bridge.py": "`tokenbridge worker|reconcile|status` commands",
    "src/tokenbridge/adapters/chain/txmanager.py": "crash-safe transaction manager",
    "src/tokenbridge/services/epochs.py": "epoch close + settle",
    "src/tokenbridge/services/withdrawals.py": "withdrawal requests + payouts",
    "src/tokenbridge/services/deposits.py": "deposit indexer crediting",
    "src/tokenbridge/services/reconcile.py": "`tokenbridge reconcile`",
}
REQUIRED_COMMANDS: tuple[str, ...] = ("worker", "reconcile", "status", "deploy", "serve", "db", "apikey")


class MissingPieceError(Exception):
    """A part of the bridge the whole-system tests drive is not in the tree (yet)."""


def missing_pieces() -> list[str]:
    """Human-readable names of the pieces of the bridge that are not in the tree yet."""
    missing = [f"{path} ({what})" for path, what in REQUIRED_MODULES.items() if not (ROOT / path).is_file()]
    try:
        from tokenbridge.entrypoints.cli import app

        names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
        names |= {g.name or "" for g in app.registered_groups}
    except Exception as exc:  # an import error in a CLI module is itself a missing piece
        return [*missing, f"tokenbridge.entrypoints.cli does not import ({type(exc).__name__}: {exc})"]
    missing += [f"`tokenbridge {name}` command" for name in REQUIRED_COMMANDS if name not in names]
    return missing


REQUIRED_ROUTES: tuple[tuple[str, str], ...] = (
    ("post", "/v1/accounts"),
    ("post", "/v1/gifts"),
    ("post", "/v1/webhooks/payments"),
    ("post", "/v1/creators/{creator_id}/wallet"),
    ("post", "/v1/withdrawals"),
    ("get", "/v1/withdrawals/{withdrawal_id}"),
)


def missing_routes(api_url: str) -> list[str]:
    """Routes of the issue the running API does not serve (from its OpenAPI document)."""
    spec = httpx.get(f"{api_url}/openapi.json", timeout=10).json()
    have = {(m, re.sub(r"\{[^}]+\}", "{}", p)) for p, ops in spec.get("paths", {}).items() for m in ops}
    return [f"{m.upper()} {p}" for m, p in REQUIRED_ROUTES if (m, re.sub(r"\{[^}]+\}", "{}", p)) not in have]


# --- databases --------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database(server_url: str, prefix: str = "tb_fault") -> Iterator[str]:
    """CREATE DATABASE <prefix>_<random> on the server; yield its URL; DROP it at the end."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{secrets.token_hex(5)}"
    server = make_url(server_url).set(drivername="postgresql")
    dsn = server.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file in `workdir`, or a PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'ledger.sqlite3'}"
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        raise RuntimeError(f"PostgreSQL needs {POSTGRES_ENV}")
    with postgres_database(server) as url:
        yield url


# --- processes --------------------------------------------------------------------------------


class Service:
    """A `tokenbridge` subprocess in its own process group, output appended to a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.log_path = cwd / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.peak_rss_kb = 0

    def start(self) -> None:
        assert not self.alive(), f"{self.name} already running"
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"\n===== start #{self.starts} {time.strftime('%H:%M:%S')} =====\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def sample_rss(self) -> int:
        """VmHWM (peak resident set) of the running process in kB; remembered across samples."""
        if not self.alive():
            return self.peak_rss_kb
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
        except OSError:
            pass
        return self.peak_rss_kb

    def kill9(self) -> None:
        """SIGKILL the process group (the process and anything it spawned), then reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.kills += 1
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; idempotent."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def exited_unexpectedly(self) -> int | None:
        """The exit code if the process ended on its own (not by our kill), else None."""
        if self.process is None:
            return None
        return self.process.poll()

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --- the system -------------------------------------------------------------------------------


@dataclass
class SystemConfig:
    """Knobs of one run. Times are seconds."""

    block_time: float = 0.5  # anvil interval mining
    confirmations: int = 1
    epoch_seconds: float = 2.0  # the worker closes an epoch at least this often
    worker_poll_seconds: float = 0.2
    lease_ttl_seconds: float = 2.0  # a killed worker's lease expires this soon
    max_backoff_seconds: float = 1.0  # the worker's retry backoff cap while the chain is down
    payout_delay: int = 0  # seconds before a settled credit is payable on-chain
    extra_env: dict[str, str] = field(default_factory=dict)  # for every process (like a .env file)
    extra_worker_args: list[str] = field(default_factory=list)


class BridgeSystem:
    """anvil + deployed vault + migrated database + `tokenbridge serve` + `tokenbridge worker`."""

    def __init__(self, workdir: Path, db_url: str, config: SystemConfig | None = None) -> None:
        self.workdir = workdir
        self.db_url = db_url
        self.config = config or SystemConfig()
        self.state_path = workdir / "anvil-state.json"
        self.chain_port = free_port()
        self.api_port = free_port()
        self.anvil: Anvil | None = None
        self.api: Service | None = None
        self.worker: Service | None = None
        self.admin_key = ""
        self.deployment: dict[str, Any] = {}
        self.w3: Web3 | None = None
        self._http: httpx.Client | None = None
        self.chain_restarts = 0
        self._vault: Any = None

    # ---- environment shared by every CLI call

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.chain_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
        env.update(
            {
                "TOKENBRIDGE_DATABASE_URL": self.db_url,
                "TOKENBRIDGE_RPC_URL": self.rpc_url,
                "TOKENBRIDGE_CHAIN_ID": "31337",
                "TOKENBRIDGE_CONFIRMATIONS": str(self.config.confirmations),
                "TOKENBRIDGE_DEPLOYMENTS_DIR": str(self.workdir / "deployments"),
                "TOKENBRIDGE_BRIDGE_PRIVATE_KEY": BRIDGE.key.hex(),
                "TOKENBRIDGE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
                "TOKENBRIDGE_CREATOR_BPS": str(CREATOR_BPS),
                "TOKENBRIDGE_EPOCH_MAX_AGE_SECONDS": str(self.config.epoch_seconds),
                "TOKENBRIDGE_CHAIN_RATE_CACHE_SECONDS": "1",
                "TOKENBRIDGE_WORKER_POLL_SECONDS": str(self.config.worker_poll_seconds),
                "TOKENBRIDGE_WORKER_FOLD_SECONDS": str(max(1.0, self.config.epoch_seconds)),
                "TOKENBRIDGE_WORKER_LEASE_TTL_SECONDS": str(self.config.lease_ttl_seconds),
                "TOKENBRIDGE_WORKER_MAX_BACKOFF_SECONDS": str(self.config.max_backoff_seconds),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.config.extra_env)
        return env

    def cli(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run `tokenbridge <args>` as the operator would; raise with its output if it fails and `check`."""
        done = subprocess.run(
            [TOKENBRIDGE, *args],
            env=self.env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"`tokenbridge {' '.join(args)}` exited {done.returncode}\n"
                f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
            )
        return done

    # ---- chain

    def start_chain(self) -> None:
        """Start anvil on the fixed port; `--state` loads the previous chain and dumps it on exit."""
        self.anvil = start_anvil(
            port=self.chain_port,
            block_time=self.config.block_time,
            extra_args=["--state", str(self.state_path)],
        )
        self.w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))

    def stop_chain(self) -> None:
        """Graceful stop (SIGTERM): anvil dumps its state to `state_path` on exit."""
        if self.anvil is not None:
            self.anvil.stop()
            self.anvil = None

    def restart_chain(self, down_seconds: float = 0.0) -> None:
        head_before = self.chain.eth.block_number
        self.stop_chain()
        time.sleep(down_seconds)
        self.start_chain()
        self.chain_restarts += 1
        head_after = self.chain.eth.block_number
        # the chain survived: same or later head (nothing older than the dump is lost)
        assert head_after >= head_before - 1, f"anvil restart lost blocks: head {head_before} -> {head_after}"

    @property
    def chain(self) -> Web3:
        assert self.w3 is not None, "chain not started"
        return self.w3

    def rpc(self, method: str, *params: object) -> object:
        assert self.anvil is not None
        return self.anvil.rpc(method, *params)

    # ---- operator set-up

    def deploy(self) -> None:
        self.cli(
            "deploy",
            "--dev",
            "--rpc-url",
            self.rpc_url,
            "--bridge",
            BRIDGE.address,
            "--pauser",
            PAUSER.address,
            "--creator-bps",
            str(CREATOR_BPS),
            "--payout-delay",
            str(self.config.payout_delay),
            "--deployments-dir",
            str(self.workdir / "deployments"),
        )
        self.deployment = json.loads((self.workdir / "deployments" / "31337.json").read_text())

    def migrate(self) -> None:
        self.cli("db", "upgrade", "--url", self.db_url)

    def create_admin_key(self) -> str:
        done = self.cli("apikey", "create", "--scope", "admin", "--url", self.db_url)
        self.admin_key = done.stdout.strip().splitlines()[-1].strip()
        assert self.admin_key, "apikey create printed no key"
        return self.admin_key

    def worker_argv(self) -> list[str]:
        return [TOKENBRIDGE, "worker", *self.config.extra_worker_args]

    def start_api(self) -> None:
        self.api = Service(
            "api",
            [TOKENBRIDGE, "serve", "--port", str(self.api_port), "--log-level", "warning", "--no-access-log"],
            self.env(),
            self.workdir,
        )
        self.api.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.api.alive():
                raise RuntimeError(f"`tokenbridge serve` exited:\n{self.api.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"`tokenbridge serve` not ready within 60 s:\n{self.api.tail()}")

    def start_worker(self) -> None:
        if self.worker is None:
            self.worker = Service("worker", self.worker_argv(), self.env(), self.workdir)
        self.worker.start()

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.sample_rss()
        self.worker.kill9()

    def up(self) -> BridgeSystem:
        """Chain, contracts, database, key, API and worker, in the order an operator would."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_chain()
        self.deploy()
        self.migrate()
        self.create_admin_key()
        self.start_api()
        self.start_worker()
        return self

    def down(self) -> None:
        for svc in (self.worker, self.api):
            if svc is not None:
                svc.stop()
        if self._http is not None:
            self._http.close()
        self.stop_chain()

    def __enter__(self) -> BridgeSystem:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ---- HTTP

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.api_url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=60
            )
        return self._http

    # ---- reading the vault as an auditor would

    def vault(self) -> Any:
        """The project's VaultClient (views, events, call encoding), made once per run."""
        from tokenbridge.adapters.chain.vault import VaultClient

        if self._vault is None:
            self._vault = VaultClient(self.chain, self.deployment["vault"])
        return self._vault

    def diagnostics(self) -> str:
        parts = []
        for svc in (self.worker, self.api):
            if svc is not None:
                parts.append(f"--- {svc.name} log tail ({svc.log_path}) ---\n{svc.tail(60)}")
        return "\n".join(parts)


# --- the population ---------------------------------------------------------------------------


@dataclass
class Creator:
    id: str
    key: str  # on-chain account key (0x hex)
    wallet: LocalAccount  # the creator's own wallet: signs the link and withdrawals, receives payouts
    linked: bool = False
    gift_share: int = 0  # sum of `creator_amount` of the gifts this creator received


@dataclass
class WithdrawalRec:
    id: str
    creator: str
    to: str
    amount: int
    paid: bool = False  # seen `isPaidOut` on-chain (only used to size the next request)


@dataclass
class DepositRec:
    tx_hash: str
    wallet: str
    account: str
    amount: int
    nonce: int = 0  # of the deposit transaction
    raws: list[bytes] = field(default_factory=list)  # the signed txs (approve?, deposit), to resend


class Population:
    """Users, creators and their wallets, driven through HTTP and the chain; keeps the model.

    The model holds what must be true at the end: each user's coins are their recharges minus
    their gifts plus the deposits made to them; each wallet's tokens are its payouts minus its
    deposits; the vault's reserve is the recharges minus the payouts plus the deposits.
    """

    def __init__(self, system: BridgeSystem, rng: random.Random) -> None:
        self.sys = system
        self.rng = rng
        self.run = secrets.token_hex(3)
        self.users: list[str] = []
        self.user_keys: dict[str, str] = {}
        self.creators: dict[str, Creator] = {}
        self.spendable: Counter[str] = Counter()  # recharges - gifts (credited synchronously)
        self.deposited_to: Counter[str] = Counter()  # deposits sent to a user (credited by the worker)
        self.recharged = 0
        self.recharges = 0
        self.gifts = 0
        self.gifts_refused = 0
        self.gross = 0
        self.withdrawals: dict[str, WithdrawalRec] = {}
        self.withdrawals_refused = 0
        self.deposits: list[DepositRec] = []
        self.wallet_nonce: dict[str, int] = {}
        self.wallet_out: Counter[str] = Counter()  # tokens a wallet has sent back by deposit
        self.retries: Counter[str] = Counter()
        self._n = 0

    def uid(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self.run}-{self._n}"

    # ---- HTTP with the retries any client does: a 5xx or a dropped connection is retried with
    # the same body (the same idempotency id), so a retry can never create a second effect.

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        delay = 0.1
        give_up = time.monotonic() + 60
        last = ""
        while time.monotonic() < give_up:
            try:
                resp = self.sys.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                self.retries[f"{path.split('/')[2]} {type(exc).__name__}"] += 1
                last = repr(exc)
            else:
                if resp.status_code < 500:
                    return resp
                self.retries[f"{path.split('/')[2]} {resp.status_code}"] += 1
                last = f"{resp.status_code} {resp.text[:300]}"
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        raise AssertionError(f"{method} {path} kept failing for 60 s, last: {last}\n{self.sys.diagnostics()}")

    def get(self, path: str) -> Any:
        resp = self._send("GET", path)
        assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json()

    # ---- accounts, recharges, gifts

    def open_user(self) -> str:
        uid = self.uid("u")
        resp = self._send("POST", "/v1/accounts", json={"id": uid, "kind": "user"})
        assert resp.status_code == 201, resp.text
        self.users.append(uid)
        self.user_keys[uid] = resp.json()["account_key"]
        return uid

    def open_creator(self) -> Creator:
        cid = self.uid("c")
        resp = self._send("POST", "/v1/accounts", json={"id": cid, "kind": "creator"})
        assert resp.status_code == 201, resp.text
        creator = Creator(id=cid, key=resp.json()["account_key"], wallet=Account.create())
        self.creators[cid] = creator
        return creator

    def recharge(self, user: str, amount: int) -> None:
        """The payment provider reports a successful payment (signed webhook)."""
        body = json.dumps(
            {
                "id": self.uid("evt"),
                "type": "recharge.succeeded",
                "data": {"payment_id": self.uid("pay"), "account_id": user, "amount": amount},
            }
        ).encode()
        header = signature_header([WEBHOOK_SECRET.encode()], int(time.time()), body)
        resp = self._send(
            "POST",
            "/v1/webhooks/payments",
            content=body,
            headers={"Tokenbridge-Signature": header, "Content-Type": "application/json"},
        )
        assert resp.status_code in (200, 201), f"webhook: {resp.status_code} {resp.text[:300]}"
        self.spendable[user] += amount
        self.recharged += amount
        self.recharges += 1

    def gift(self, user: str, creator: Creator, amount: int) -> bool:
        body = {"id": self.uid("g"), "from": user, "to": creator.id, "amount": amount}
        resp = self._send("POST", "/v1/gifts", json=body)
        if resp.status_code == 409 and self.spendable[user] < amount:
            self.gifts_refused += 1
            return False
        assert resp.status_code == 201, f"gift {body} (model {self.spendable[user]}): {resp.status_code} {resp.text}"
        receipt = resp.json()
        assert receipt["gross"] == amount
        assert receipt["creator_amount"] + receipt["platform_amount"] == amount
        self.spendable[user] -= amount
        creator.gift_share += receipt["creator_amount"]
        self.gifts += 1
        self.gross += amount
        return True

    # ---- wallets and withdrawals (EIP-712, tokenbridge.domain.withdrawal)

    def _sign(self, wallet: LocalAccount, typed: dict[str, Any]) -> str:
        signed = Account.sign_typed_data(
            wallet.key, domain_data=typed["domain"], message_types=typed["types"], message_data=typed["message"]
        )
        return "0x" + bytes(signed.signature).hex()

    def link_wallet(self, creator: Creator) -> None:
        from tokenbridge.domain.withdrawal import WalletLinkMessage

        deadline = int(time.time()) + 3600
        msg = WalletLinkMessage(creator.id, creator.key, creator.wallet.address, deadline)
        body = {
            "wallet": creator.wallet.address,
            "deadline": deadline,
            "signature": self._sign(creator.wallet, msg.typed_data(31337, self.sys.deployment["vault"])),
        }
        resp = self._send("POST", f"/v1/creators/{creator.id}/wallet", json=body)
        assert resp.status_code in (200, 201), f"wallet link: {resp.status_code} {resp.text[:300]}"
        creator.linked = True

    def withdrawal_request(self, creator: Creator, amount: int) -> tuple[WithdrawalRec, dict[str, Any]]:
        from tokenbridge.domain.withdrawal import WithdrawalMessage

        rec = WithdrawalRec(id=self.uid("w"), creator=creator.id, to=creator.wallet.address, amount=amount)
        deadline = int(time.time()) + 3600
        msg = WithdrawalMessage(rec.id, creator.key, rec.to, amount, deadline)
        body = {
            "id": rec.id,
            "creator_id": creator.id,
            "to": rec.to,
            "amount": amount,
            "deadline": deadline,
            "signature": self._sign(creator.wallet, msg.typed_data(31337, self.sys.deployment["vault"])),
        }
        return rec, body

    def withdraw(self, creator: Creator, amount: int) -> WithdrawalRec | None:
        rec, body = self.withdrawal_request(creator, amount)
        resp = self._send("POST", "/v1/withdrawals", json=body)
        if resp.status_code == 409:  # more than is withdrawable right now
            self.withdrawals_refused += 1
            return None
        assert resp.status_code in (200, 201, 202), f"withdrawal: {resp.status_code} {resp.text[:300]}"
        self.withdrawals[rec.id] = rec
        return rec

    def withdrawable_now(self, creator: Creator) -> int:
        """What the creator can still ask for: on-chain matured - paid, minus own unpaid requests."""
        vault = self.sys.vault()
        unpaid = 0
        for w in self.withdrawals.values():
            if w.creator != creator.id or w.paid:
                continue
            seq = self.payout_id(w)
            if seq is not None and vault.is_paid_out(seq):
                w.paid = True
            else:
                unpaid += w.amount
        return int(vault.withdrawable(bytes.fromhex(creator.key[2:]))) - unpaid

    def payout_id(self, w: WithdrawalRec) -> int | None:
        view = self.get(f"/v1/withdrawals/{w.id}")
        seq = view.get("seq", view.get("payout_id"))
        return None if seq is None else int(seq)

    # ---- deposits: the wallet itself sends approve (once) + deposit to the vault

    def deposit(self, creator: Creator, user: str, amount: int) -> DepositRec | None:
        """Sign and send (approve once per wallet, then) `deposit(userKey, amount)`; None if the node
        could not be reached (nothing recorded, the nonce is reused next time)."""
        vault = self.sys.vault()
        wallet = creator.wallet
        w3 = self.sys.chain
        base = {"chainId": 31337, "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 10**9}
        raws: list[bytes] = []
        nonce = self.wallet_nonce.get(wallet.address)
        if nonce is None:
            self.sys.rpc("anvil_setBalance", wallet.address, hex(10**18))  # gas money for a fresh wallet
            nonce = w3.eth.get_transaction_count(wallet.address, "pending")
            approve = {
                **base,
                "nonce": nonce,
                "to": vault.coin_address,
                "gas": 80_000,
                "data": vault.coin.encode_abi("approve", args=[vault.address, 2**256 - 1]),
            }
            raws.append(bytes(wallet.sign_transaction(approve).raw_transaction))
            nonce += 1
        deposit = {
            **base,
            "nonce": nonce,
            "to": vault.address,
            "gas": 150_000,
            "data": vault.vault.encode_abi("deposit", args=[bytes.fromhex(self.user_keys[user][2:]), amount]),
        }
        raws.append(bytes(wallet.sign_transaction(deposit).raw_transaction))
        try:
            hashes = ["0x" + bytes(w3.eth.send_raw_transaction(raw)).hex() for raw in raws]
        except CHAIN_DOWN:
            self.retries["deposit: node unreachable"] += 1
            return None  # (an approve that did go through is harmless: a later one just repeats it)
        self.wallet_nonce[wallet.address] = nonce + 1
        rec = DepositRec(hashes[-1], wallet.address, user, amount, nonce, raws)
        self.deposits.append(rec)
        self.deposited_to[user] += amount
        self.wallet_out[wallet.address] += amount
        return rec

    def spendable_tokens(self, wallet: str) -> int:
        """The wallet's own view: its mined balance minus its deposits still waiting in the mempool."""
        mined = self.sys.chain.eth.get_transaction_count(wallet)  # type: ignore[arg-type]
        waiting = sum(d.amount for d in self.deposits if d.wallet == wallet and d.nonce >= mined)
        return int(self.sys.vault().balance_of(wallet)) - waiting

    def wait_deposits_mined(self, timeout: float = 120.0) -> None:
        """Every deposit is mined and succeeded. Like a wallet, resend the signed bytes of any the
        node forgot (a node restart drops its mempool)."""
        w3 = self.sys.chain
        deadline = time.monotonic() + timeout
        pending = list(self.deposits)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} deposits not mined within {timeout:.0f} s"
            still: list[DepositRec] = []
            for d in pending:
                try:
                    receipt = w3.eth.get_transaction_receipt(d.tx_hash)  # type: ignore[arg-type]
                except TransactionNotFound:
                    still.append(d)
                    continue
                assert receipt["status"] == 1, f"deposit {d.tx_hash} reverted"
            for d in still:
                for raw in d.raws:
                    with contextlib.suppress(ValueError, Web3Exception):  # already known / nonce too low
                        w3.eth.send_raw_transaction(raw)
            pending = still
            if pending:
                time.sleep(0.5)


# --- traffic ------------------------------------------------------------------------------------


@dataclass
class TrafficPlan:
    """How much of everything one run does (at least; withdrawals and deposits wait for settlement)."""

    users: int = 30
    creators: int = 10
    recharges: int = 300
    gifts: int = 400
    withdrawals: int = 60
    deposits: int = 40
    seconds: float = 60.0  # every flow is spread over about this long
    timeout: float = 240.0  # beyond `seconds`: give up (with diagnostics) if the plan cannot finish

    @classmethod
    def scaled(cls, factor: float, **overrides: Any) -> TrafficPlan:
        base = cls(**overrides)
        for name in ("users", "creators", "recharges", "gifts", "withdrawals", "deposits"):
            setattr(base, name, max(1, round(getattr(base, name) * factor)))
        return base


class Traffic:
    """Drives a `Population` through a `TrafficPlan` while faults happen around it."""

    def __init__(self, pop: Population, plan: TrafficPlan) -> None:
        self.pop = pop
        self.plan = plan
        self.rng = pop.rng

    def setup(self) -> None:
        for _ in range(self.plan.users):
            self.pop.open_user()
        for _ in range(self.plan.creators):
            self.pop.link_wallet(self.pop.open_creator())

    def _coins(self) -> int:
        return self.rng.randint(5, 40) * COIN + self.rng.randint(0, COIN - 1)

    def run(self, keep_going: Callable[[], bool] = lambda: False, on_warm: Callable[[], None] | None = None) -> None:
        """Every flow paced over `plan.seconds` (withdrawals and deposits also wait for the chain:
        settled, matured earnings; tokens in a wallet). `on_warm()` is called once the whole
        pipeline has worked once (the first deposit went out, so a payout arrived): the moment to
        start injecting faults. Continues past the plan while `keep_going()`."""
        pop, plan, rng = self.pop, self.plan, self.rng
        started = time.monotonic()
        creators = list(pop.creators.values())
        last_chain_look = 0.0
        while True:
            elapsed = time.monotonic() - started
            if elapsed > plan.seconds + plan.timeout:
                raise AssertionError(
                    f"traffic plan not done after {elapsed:.0f} s: {pop.recharges} recharges, {pop.gifts} gifts, "
                    f"{len(pop.withdrawals)} withdrawals ({pop.withdrawals_refused} refused), {len(pop.deposits)} "
                    f"deposits\n{pop.sys.diagnostics()}"
                )
            share = min(1.0, elapsed / plan.seconds)
            while pop.recharges < plan.recharges * share:
                pop.recharge(rng.choice(pop.users), self._coins())
            while pop.gifts + pop.gifts_refused < plan.gifts * share:
                user = rng.choice(pop.users)
                amount = min(pop.spendable[user], rng.randint(COIN // 10, 5 * COIN))
                if amount <= 0:
                    pop.recharge(user, self._coins())
                    continue
                pop.gift(user, rng.choice(creators), amount)
            if time.monotonic() - last_chain_look > 0.5:  # the chain moves once per block anyway
                last_chain_look = time.monotonic()
                try:
                    self._withdraw_some(creators, max(1, round(plan.withdrawals * share)))
                    self._deposit_some(creators, max(1, round(plan.deposits * share)))
                except CHAIN_DOWN:
                    pop.retries["chain look: node unreachable"] += 1
                if on_warm is not None and pop.deposits:
                    on_warm()
                    on_warm = None
            done = (
                pop.recharges >= plan.recharges
                and pop.gifts + pop.gifts_refused >= plan.gifts
                and len(pop.withdrawals) >= plan.withdrawals
                and len(pop.deposits) >= plan.deposits
            )
            if done and on_warm is None and not keep_going():
                return
            time.sleep(0.02)

    def _withdraw_some(self, creators: list[Creator], upto: int) -> None:
        pop, rng = self.pop, self.rng
        for creator in rng.sample(creators, min(len(creators), 4)):
            if len(pop.withdrawals) >= upto:
                return
            available = pop.withdrawable_now(creator)
            if available >= COIN:
                pop.withdraw(creator, rng.randint(COIN, max(COIN, available // 3)))

    def _deposit_some(self, creators: list[Creator], upto: int) -> None:
        pop, rng = self.pop, self.rng
        for creator in rng.sample(creators, min(len(creators), 4)):
            if len(pop.deposits) >= upto:
                return
            have = pop.spendable_tokens(creator.wallet.address)
            if have >= COIN // 5:
                pop.deposit(creator, rng.choice(pop.users), rng.randint(COIN // 10, have // 2))


# --- faults -------------------------------------------------------------------------------------


class WorkerKiller(threading.Thread):
    """`kill -9` the worker at random moments, restarting it at once each time, `kills` times.

    A worker spends its first ~2 s importing and waiting for the killed one's lease to expire, so
    a uniform delay would mostly hit start-up. Instead `startup_share` of the kills land at a
    random moment after the process starts (start-up, lease wait, recovery), the rest at a random
    moment within `active` seconds after the new process took the signer lease (read from the
    `signers` row: the holder id is host:pid:random), i.e. while it signs, sends and books.
    """

    def __init__(
        self,
        system: BridgeSystem,
        rng: random.Random,
        kills: int,
        *,
        startup_share: float = 0.3,
        active: tuple[float, float] = (0.3, 2.5),
    ) -> None:
        super().__init__(name="worker-killer", daemon=True)
        self.sys = system
        self.rng = rng
        self.kills = kills
        self.done = 0
        self.startup_share = startup_share
        self.active = active
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.unexpected_exits: list[int] = []
        self.kills_while_leading = 0

    def _leading(self, pid: int) -> bool:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.sys.db_url)
        try:
            with engine.connect() as conn:
                holders = [str(h) for (h,) in conn.execute(text("SELECT lease_holder FROM signers"))]
        except Exception:  # SQLite busy or table not there yet: not leading as far as we know
            return False
        finally:
            engine.dispose()
        return any(f":{pid}:" in h for h in holders)

    def _wait_for_moment(self) -> bool:
        """Sleep until the chosen moment; False if asked to stop."""
        worker = self.sys.worker
        assert worker is not None
        if self.rng.random() < self.startup_share:
            return not self.stop_event.wait(self.rng.uniform(0.1, 2.5))
        deadline = time.monotonic() + 30
        while not self._leading(worker.pid):
            if time.monotonic() > deadline or not worker.alive():
                return True  # never led (or died): kill it anyway; the test reports unexpected exits
            if self.stop_event.wait(0.1):
                return False
        self.kills_while_leading += 1
        return not self.stop_event.wait(self.rng.uniform(*self.active))

    def run(self) -> None:
        try:
            while self.done < self.kills and not self.stop_event.is_set():
                if not self._wait_for_moment():
                    break
                worker = self.sys.worker
                assert worker is not None
                code = worker.exited_unexpectedly()
                if code is not None:  # it died on its own: a bug (kept, reported by the test)
                    self.unexpected_exits.append(code)
                self.sys.kill_worker()
                self.done += 1
                if self.rng.random() < 0.3:
                    time.sleep(self.rng.uniform(0.1, 1.0))  # sometimes the supervisor is slow
                self.sys.start_worker()
        except BaseException as exc:
            self.error = exc

    def running(self) -> bool:
        return self.is_alive() and self.done < self.kills

    def finish(self) -> None:
        self.stop_event.set()
        if self.ident is not None:  # started
            self.join(timeout=60)
        if self.error is not None:
            raise self.error


class ChainBouncer(threading.Thread):
    """Stop anvil (gracefully: it dumps its state) at random moments and start it again."""

    def __init__(
        self,
        system: BridgeSystem,
        rng: random.Random,
        restarts: int,
        *,
        up: tuple[float, float] = (4.0, 8.0),
        down: tuple[float, float] = (1.0, 4.0),
    ) -> None:
        super().__init__(name="chain-bouncer", daemon=True)
        self.sys = system
        self.rng = rng
        self.restarts = restarts
        self.up, self.down = up, down
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while self.sys.chain_restarts < self.restarts and not self.stop_event.is_set():
                if self.stop_event.wait(self.rng.uniform(*self.up)):
                    break
                self.sys.restart_chain(self.rng.uniform(*self.down))
        except BaseException as exc:
            self.error = exc

    def running(self) -> bool:
        return self.is_alive() and self.sys.chain_restarts < self.restarts

    def finish(self) -> None:
        self.stop_event.set()
        if self.ident is not None:  # started
            self.join(timeout=60)
        if self.error is not None:
            raise self.error


# --- final checks -------------------------------------------------------------------------------


@dataclass
class FinalReport:
    recharges: int
    recharged: int
    mint_batches: int
    gifts: int
    withdrawals: int
    withdrawn: int
    payout_txs: int
    deposits: int
    deposited: int
    bridge_txs: int
    worker_kills: int
    worker_starts: int
    chain_restarts: int
    client_retries: dict[str, int]
    seconds_to_converge: float


def _bridge_transactions(w3: Web3, address: str, from_block: int, to_block: int) -> list[dict[str, Any]]:
    """Every transaction the bridge key sent in [from_block, to_block], in chain order."""
    out: list[dict[str, Any]] = []
    for number in range(from_block, to_block + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        out.extend(dict(tx) for tx in block["transactions"] if tx["from"] == address)
    return out


def find_problems(system: BridgeSystem, pop: Population) -> tuple[list[str], dict[str, int]]:
    """Everything point 6 of the issue asks, compared across the model, the API, the vault and the
    worker's records. Pure (reads only). Returns (problems, figures)."""
    problems: list[str] = []
    w3 = system.chain
    vault = system.vault()
    start = int(system.deployment["deploy_block"])
    head = w3.eth.block_number

    # recharges: minted once, all of them
    minted = vault.events("RechargesMinted", start, head)
    batch_ids = Counter(int(e["args"]["batchId"]) for e in minted)
    minted_amount = sum(int(e["args"]["amount"]) for e in minted)
    minted_count = sum(int(e["args"]["count"]) for e in minted)
    if [b for b, n in batch_ids.items() if n > 1]:
        problems.append(f"mint batch ids minted twice: {[b for b, n in batch_ids.items() if n > 1]}")
    if minted_amount != pop.recharged or minted_count != pop.recharges:
        problems.append(
            f"minted {minted_amount} in {minted_count} recharges; the provider paid {pop.recharged} in {pop.recharges}"
        )

    # withdrawals: confirmed, paid exactly once on-chain; per creator, the vault == the ledger
    executed: Counter[int] = Counter()
    skipped: Counter[int] = Counter(int(e["args"]["payoutId"]) for e in vault.events("PayoutSkipped", start, head))
    batches = vault.events("PayoutBatchExecuted", start, head)
    for e in batches:
        executed.update(int(i) for i in e["args"]["ids"])
    payout_total = sum(int(e["args"]["totalAmount"]) for e in batches)
    paid: Counter[str] = Counter()
    received: Counter[str] = Counter()
    seqs: Counter[int] = Counter()
    for w in pop.withdrawals.values():
        view = pop.get(f"/v1/withdrawals/{w.id}")
        state = view.get("state", view.get("status"))
        seq = view.get("seq", view.get("payout_id"))
        if state != "confirmed" or seq is None:
            problems.append(f"withdrawal {w.id}: state {state!r}, payout id {seq}")
            continue
        seqs[int(seq)] += 1
        if not vault.is_paid_out(int(seq)):
            problems.append(f"withdrawal {w.id} (payout id {seq}) confirmed, but the vault's isPaidOut is false")
        if executed[int(seq)] - skipped[int(seq)] != 1:
            problems.append(
                f"withdrawal {w.id} (payout id {seq}) paid {executed[int(seq)] - skipped[int(seq)]} times on-chain"
            )
        paid[w.creator] += w.amount
        received[w.to] += w.amount
    if [s for s, n in seqs.items() if n > 1]:
        problems.append(f"two withdrawals share a payout id: {[s for s, n in seqs.items() if n > 1]}")
    withdrawn = sum(paid.values())
    if payout_total != withdrawn:
        problems.append(f"payout events move {payout_total} tokens; confirmed withdrawals total {withdrawn}")
    for c in pop.creators.values():
        key = bytes.fromhex(c.key[2:])
        on_chain_paid, earned = vault.paid_out(key), vault.earned(key)
        balances = pop.get(f"/v1/accounts/{c.id}")["balances"]
        if on_chain_paid != paid[c.id]:
            problems.append(f"creator {c.id}: vault paidOut {on_chain_paid} != confirmed withdrawals {paid[c.id]}")
        if balances["held"] != 0:
            problems.append(f"creator {c.id}: {balances['held']} still held")
        if balances["earnings"] != earned - on_chain_paid:
            problems.append(
                f"creator {c.id}: ledger earnings {balances['earnings']} != vault earned {earned} "
                f"- paid {on_chain_paid}"
            )
        if earned < c.gift_share:
            problems.append(f"creator {c.id}: vault earned {earned} < the creator shares of their gifts {c.gift_share}")

    # wallets: each payout arrived once, each deposit left once
    for c in pop.creators.values():
        address = c.wallet.address
        have, expect = vault.balance_of(address), received[address] - pop.wallet_out[address]
        if have != expect:
            problems.append(f"wallet {address}: {have} tokens, expected payouts - deposits = {expect}")

    # deposits: one event each, credited once each
    events = vault.events("Deposited", start, head)
    if len(events) != len(pop.deposits) or sum(int(e["args"]["amount"]) for e in events) != sum(
        d.amount for d in pop.deposits
    ):
        problems.append(f"{len(events)} Deposited events on-chain; the holders sent {len(pop.deposits)}")
    for user in pop.users:
        coins = pop.get(f"/v1/accounts/{user}")["balances"]["coins"]
        expect = pop.spendable[user] + pop.deposited_to[user]
        if coins != expect:
            problems.append(f"user {user}: ledger coins {coins} != recharges - gifts + deposits = {expect}")

    # reserve: what entered the vault minus what left it
    deposited = sum(d.amount for d in pop.deposits)
    reserve = vault.reserve()
    if reserve != pop.recharged - withdrawn + deposited:
        problems.append(f"reserve {reserve} != recharged {pop.recharged} - paid {withdrawn} + deposited {deposited}")

    # the bridge key: every tx succeeded, nonces gap-free, each one written ahead by the worker
    txs = _bridge_transactions(w3, BRIDGE.address, start, head)
    nonces = [int(t["nonce"]) for t in txs]
    if nonces != list(range(len(nonces))) or w3.eth.get_transaction_count(BRIDGE.address) != len(nonces):
        problems.append(f"bridge nonces on-chain are not 0..{len(nonces) - 1}: {nonces[:30]}")
    for t in txs:
        if w3.eth.get_transaction_receipt(t["hash"])["status"] != 1:
            problems.append(f"bridge tx nonce {t['nonce']} ({bytes(t['hash']).hex()}) reverted")
    problems += _tx_record_problems(system, txs)

    figures = {
        "mint_batches": len(batch_ids),
        "withdrawn": withdrawn,
        "payout_txs": len(batches),
        "deposited": deposited,
        "bridge_txs": len(txs),
    }
    return problems, figures


def _tx_record_problems(system: BridgeSystem, chain_txs: list[dict[str, Any]]) -> list[str]:
    """The worker's write-ahead records agree with the chain: one final record per used nonce,
    and every transaction the key sent is one of the stored attempts."""
    from sqlalchemy import create_engine, text

    engine = create_engine(system.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT nonce, state, purpose, ref, mined_hash FROM chain_txs WHERE signer = :s ORDER BY nonce"),
                {"s": BRIDGE.address},
            ).all()
            stored = {
                str(h).lower().removeprefix("0x")
                for (h,) in conn.execute(text("SELECT tx_hash FROM chain_tx_attempts"))
            }
    finally:
        engine.dispose()
    problems: list[str] = []
    nonces = [int(r.nonce) for r in rows]
    if nonces != list(range(len(nonces))):
        problems.append(f"chain_txs nonces are not gap-free from 0: {nonces[:30]}")
    if len(rows) != len(chain_txs):
        problems.append(f"{len(rows)} chain_txs records, {len(chain_txs)} bridge transactions on-chain")
    states = Counter(r.state for r in rows)
    if set(states) != {"confirmed"} and rows:
        problems.append(f"chain_txs states at the end: {dict(states)} (expected all confirmed)")
    if [k for k, n in Counter((r.purpose, r.ref) for r in rows).items() if n > 1]:
        problems.append("a (purpose, ref) was recorded twice in chain_txs")
    on_chain = {int(t["nonce"]): bytes(t["hash"]).hex() for t in chain_txs}
    for r in rows:
        mined = str(r.mined_hash or "").lower().removeprefix("0x")
        if on_chain.get(int(r.nonce)) != mined:
            problems.append(
                f"chain_txs nonce {r.nonce} ({r.purpose} {r.ref}) records {r.mined_hash}; chain has another"
            )
    for t in chain_txs:
        if bytes(t["hash"]).hex() not in stored:
            problems.append(f"bridge tx nonce {t['nonce']} on-chain has no stored attempt (sent without write-ahead)")
    return problems


def converge(system: BridgeSystem, pop: Population, *, timeout: float, worker_kills: int = 0) -> FinalReport:
    """Wait until the system is consistent (the worker finishes what is in flight), then require
    `tokenbridge reconcile` to agree. Errors are permanent (a double payment or credit never
    undoes itself), so on timeout the last list of problems is the failure message."""
    pop.wait_deposits_mined()
    started = time.monotonic()
    problems: list[str] = ["not checked yet"]
    figures: dict[str, int] = {}
    last_note = started
    while time.monotonic() - started < timeout:
        problems, figures = find_problems(system, pop)
        if not problems:
            break
        if time.monotonic() - last_note > 10:
            last_note = time.monotonic()
            log(f"still converging ({len(problems)} open): {problems[:3]}")
        time.sleep(1.0)
    assert not problems, (
        f"not consistent {timeout:.0f} s after the traffic stopped:\n- "
        + "\n- ".join(problems[:50])
        + f"\n{system.diagnostics()}"
    )
    seconds = time.monotonic() - started
    reconcile = system.cli("reconcile", "--json", check=False)
    assert reconcile.returncode == 0, (
        f"`tokenbridge reconcile --json` exited {reconcile.returncode} on a consistent system:\n"
        f"{reconcile.stdout[-3000:]}\n{reconcile.stderr[-2000:]}"
    )
    status = system.cli("status", "--json", check=False)
    assert status.returncode == 0, (
        f"`tokenbridge status` exited {status.returncode} (an alarm?):\n{status.stdout[-3000:]}"
    )
    in_flight = json.loads(status.stdout)["in_flight"]
    assert in_flight == 0, f"`tokenbridge status` reports {in_flight} transactions in flight on a settled system"
    return FinalReport(
        recharges=pop.recharges,
        recharged=pop.recharged,
        mint_batches=figures["mint_batches"],
        gifts=pop.gifts,
        withdrawals=len(pop.withdrawals),
        withdrawn=figures["withdrawn"],
        payout_txs=figures["payout_txs"],
        deposits=len(pop.deposits),
        deposited=figures["deposited"],
        bridge_txs=figures["bridge_txs"],
        worker_kills=worker_kills,
        worker_starts=system.worker.starts if system.worker else 0,
        chain_restarts=system.chain_restarts,
        client_retries=dict(pop.retries),
        seconds_to_converge=round(seconds, 1),
    )


def env_int(name: str, default: int) -> int:
    """A size knob from the environment (`make soak` raises them)."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def settlement_unwired(system: BridgeSystem) -> str | None:
    """Why `tokenbridge serve` cannot take withdrawals, if it cannot (routes without services)."""
    resp = system.http.get("/v1/withdrawals/probe-unknown-id")
    if resp.status_code == 503:
        return (
            "`tokenbridge serve` answers GET /v1/withdrawals/{id} with 503 "
            f"({resp.json().get('type', '')}: {resp.json().get('detail', '')}): the settlement services are not "
            "wired into the API (app.state.settlement, set by bootstrap / `tokenbridge serve`)"
        )
    return None


@contextlib.contextmanager
def running_system(kind: str, workdir: Path, config: SystemConfig | None = None) -> Iterator[BridgeSystem]:
    """The whole system on a fresh database of `kind` ("sqlite" | "postgres"); raises
    MissingPieceError (before starting anything, or once the API is up) naming what is absent."""
    missing = missing_pieces()
    if missing:
        raise MissingPieceError("; ".join(missing))
    with database(kind, workdir) as url:
        system = BridgeSystem(workdir, url, config)
        try:
            system.up()
            routes = missing_routes(system.api_url)
            if routes:
                raise MissingPieceError("the API does not serve " + ", ".join(routes))
            unwired = settlement_unwired(system)
            if unwired:
                raise MissingPieceError(unwired)
            yield system
        finally:
            system.down()


@contextlib.contextmanager
def system_or_skip(kind: str, workdir: Path) -> Iterator[BridgeSystem]:
    """`running_system` for a pytest fixture: skipped, with the reason, when PostgreSQL is asked
    for but not configured or a piece of the bridge is missing."""
    import pytest

    if kind == "postgres" and not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"PostgreSQL run needs {POSTGRES_ENV}")
    try:
        with running_system(kind, workdir, SystemConfig()) as running:
            yield running
    except MissingPieceError as exc:
        pytest.skip(f"bridge piece missing: {exc}")


def fault_backends(default: str) -> list[str]:
    """Database backends a fault test runs on: `TOKENBRIDGE_FAULT_BACKENDS` (comma-separated, e.g.
    "sqlite,postgres" under `make soak`), else `default`, where "auto" means PostgreSQL when
    TOKENBRIDGE_TEST_POSTGRES_URL is set (production's database) and SQLite otherwise."""
    raw = os.environ.get("TOKENBRIDGE_FAULT_BACKENDS", "").strip() or default
    if raw == "auto":
        return ["postgres" if os.environ.get(POSTGRES_ENV) else "sqlite"]
    return [b.strip() for b in raw.split(",") if b.strip()]
