"""`tokenbridge worker`: the one loop that connects the ledger to the vault.

    wait for the signer's lease (another holder's live lease -> wait, poll, never send)
    connect to the node (builds every step; a wiring error ends the start-up), txmanager.recover()
    loop: renew lease -> txmanager.tick -> epochs.step -> withdrawals.step -> deposits.step
          -> ledger fold every `fold_s` -> sleep `poll_s`
    SIGTERM / SIGINT: finish the current step, release the lease, exit 0

Every step is isolated: an exception is logged (type and message; no key is ever in scope of a
message: the signer exposes only its address) and that step alone backs off exponentially
(poll_s * 2**failures, capped, with jitter), so a transient RPC error never ends the loop.
Losing the lease (e.g. a long pause let it expire and another worker took over) sends the
worker back to waiting.

Metrics (Prometheus, served on `TOKENBRIDGE_WORKER_METRICS_PORT` when set):
`tokenbridge_worker_steps_total{step,result}`, `tokenbridge_worker_step_failures{step}`
(consecutive), `tokenbridge_worker_lease_held`, `tokenbridge_alarms_raised_total{kind}`,
`tokenbridge_alarms_open`, `tokenbridge_indexer_lag_blocks`, `tokenbridge_indexer_halted`.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol, cast

from prometheus_client import CollectorRegistry, Counter, Gauge

from tokenbridge.domain.errors import ConfigurationError

log = logging.getLogger("tokenbridge.worker")


class StartupError(ConfigurationError):
    """The worker cannot be wired (a bug or a bad deployment): stop instead of retrying."""


# raised by a start-up action, these end the worker: retrying cannot fix a wiring error (an
# AttributeError/TypeError while building the steps becomes a StartupError); node and database
# errors are retried
FATAL_AT_STARTUP: tuple[type[BaseException], ...] = (StartupError, ImportError, NameError)


class Lease(Protocol):
    holder: str

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.steps = Counter(
            "tokenbridge_worker_steps",
            "Worker steps run, by step and result.",
            ("step", "result"),
            registry=self.registry,
        )
        self.failures = Gauge(
            "tokenbridge_worker_step_failures", "Consecutive failures of a step.", ("step",), registry=self.registry
        )
        self.lease_held = Gauge(
            "tokenbridge_worker_lease_held", "1 while this worker holds the lease.", registry=self.registry
        )
        self.alarms_raised = Counter(
            "tokenbridge_alarms_raised", "Alarms raised by this worker, by kind.", ("kind",), registry=self.registry
        )
        self.alarms_open = Gauge("tokenbridge_alarms_open", "Alarms open in the database.", registry=self.registry)
        self.indexer_lag = Gauge(
            "tokenbridge_indexer_lag_blocks", "Chain head minus the deposits indexer's cursor.", registry=self.registry
        )
        self.indexer_halted = Gauge(
            "tokenbridge_indexer_halted", "1 while crediting is stopped by a deep-reorg alarm.", registry=self.registry
        )

    def alarm(self, kind: str, scope: str, detail: str) -> None:  # noqa: ARG002 -- the DepositService hook
        self.alarms_raised.labels(kind).inc()


@dataclass
class Step:
    name: str
    run: Callable[[], object]
    failures: int = 0
    not_before: float = 0.0


@dataclass
class Worker:
    """The loop, independent of how its parts are built (tests pass fakes)."""

    lease: Lease
    steps: list[Step]
    recover: Callable[[], object] | None = None
    connect: Callable[[], None] | None = None
    fold: Callable[[], object] | None = None
    after_step: Callable[[str, object], None] | None = None
    on_exit: Callable[[], None] | None = None  # e.g. dispose of the engine, after the lease is released
    poll_s: float = 2.0
    fold_s: float = 30.0
    max_backoff_s: float = 60.0
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    clock: Callable[[], float] = time.monotonic
    _stop: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Ask the loop to end after the step it is running (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        """Run until stopped; always releases the lease; returns the exit code (0)."""
        log.info("worker %s starting", self.lease.holder)
        try:
            while not self.stopping:
                if not self._wait_for_lease():
                    break
                if not self._retry("connect", self.connect) or not self._retry("recover", self.recover):
                    break
                self._lead()
        finally:
            self._release()
            if self.on_exit is not None:
                self.on_exit()
        log.info("worker %s stopped", self.lease.holder)
        return 0

    # -- phases -------------------------------------------------------------------------------

    def _wait_for_lease(self) -> bool:
        announced = False
        while not self.stopping:
            try:
                if self.lease.acquire():
                    self.metrics.lease_held.set(1)
                    log.info("worker %s holds the signer lease", self.lease.holder)
                    return True
            except Exception as exc:  # the database may be briefly unreachable: wait and try again
                log.warning("lease: %s: %s", type(exc).__name__, exc)
            if not announced:
                log.info("worker %s: the signer lease is held by another worker; waiting", self.lease.holder)
                announced = True
            self._stop.wait(self.poll_s)
        return False

    def _retry(self, name: str, action: Callable[[], object] | None) -> bool:
        """Run a start-up action until it succeeds (backing off) or the worker is stopped."""
        if action is None:
            return True
        failures = 0
        while not self.stopping:
            try:
                self.lease.acquire()  # keep the lease alive while retrying (a lost one is noticed later)
            except Exception as exc:  # the database may be briefly unreachable
                log.warning("lease renewal: %s: %s", type(exc).__name__, exc)
            try:
                action()
                return True
            except FATAL_AT_STARTUP as exc:
                log.error("%s failed for good (%s: %s); the worker stops", name, type(exc).__name__, exc)
                raise
            except Exception as exc:  # transient failures (node, database) are logged and retried
                failures += 1
                delay = self._backoff(failures)
                log.warning("%s failed (%s: %s); retrying in %.1f s", name, type(exc).__name__, exc, delay)
                self._stop.wait(delay)
        return False

    def _lead(self) -> None:
        last_fold = self.clock()
        while not self.stopping:
            try:
                held = self.lease.acquire()
            except Exception as exc:  # keep leading only on proof; retry next round
                log.warning("lease renewal: %s: %s", type(exc).__name__, exc)
                held = False
            if not held:
                self.metrics.lease_held.set(0)
                log.warning("worker %s lost the signer lease; waiting to get it back", self.lease.holder)
                return
            for step in self.steps:
                if self.stopping:
                    return
                self._run_step(step)
            if self.fold is not None and not self.stopping and self.clock() - last_fold >= self.fold_s:
                self._run_step(Step("fold", self.fold))
                last_fold = self.clock()
            self._stop.wait(self.poll_s)

    def _run_step(self, step: Step) -> None:
        now = self.clock()
        if now < step.not_before:
            return
        try:
            result = step.run()
        except Exception as exc:  # a step's failure must never end the loop
            step.failures += 1
            delay = self._backoff(step.failures)
            step.not_before = self.clock() + delay
            self.metrics.steps.labels(step.name, "error").inc()
            self.metrics.failures.labels(step.name).set(step.failures)
            log.warning(
                "step %s failed (%s: %s); attempt %d, next try in %.1f s",
                step.name,
                type(exc).__name__,
                exc,
                step.failures,
                delay,
            )
            return
        if step.failures:
            log.info("step %s recovered after %d failure(s)", step.name, step.failures)
        step.failures, step.not_before = 0, 0.0
        self.metrics.steps.labels(step.name, "ok").inc()
        self.metrics.failures.labels(step.name).set(0)
        if self.after_step is not None:
            try:
                self.after_step(step.name, result)
            except Exception as exc:  # reporting never stops the loop
                log.warning("after step %s: %s: %s", step.name, type(exc).__name__, exc)

    def _backoff(self, failures: int) -> float:
        base = min(self.max_backoff_s, self.poll_s * 2 ** min(failures, 20))
        return float(base * random.uniform(0.8, 1.0))

    def _release(self) -> None:
        try:
            self.lease.release()
        except Exception as exc:  # the lease expires on its own anyway
            log.warning("could not release the lease (%s: %s); it expires on its own", type(exc).__name__, exc)
        self.metrics.lease_held.set(0)


# --- wiring from settings ---------------------------------------------------------------------


@dataclass
class _Parts:
    """Chain-side parts, built by `connect` (they need the node)."""

    steps: dict[str, Callable[[], object]] = field(default_factory=dict)
    txm: Any = None


def build_worker(settings: Any, metrics: WorkerMetrics | None = None) -> Worker:
    """Wire the worker from Settings; chain-side parts are built in `connect` (retried)."""
    from web3 import Web3

    from tokenbridge.adapters.chain.keystore import load_signer
    from tokenbridge.adapters.db import migrate
    from tokenbridge.adapters.db.engine import make_engine, session_factories
    from tokenbridge.adapters.db.uow import UnitOfWorkFactory
    from tokenbridge.bootstrap import resolve_vault
    from tokenbridge.services.lease import LeaderLease, default_holder_id
    from tokenbridge.services.ledger import LedgerService

    metrics = metrics or WorkerMetrics()
    engine = make_engine(settings.database_url)
    current, head = migrate.current_revision(engine), migrate.head_revision(settings.database_url)
    if current != head:
        raise ConfigurationError(f"database is at revision {current}, not {head}: run `tokenbridge db upgrade`")
    writer, reader = session_factories(engine)
    uow = UnitOfWorkFactory(writer, reader)
    signer = load_signer(
        keystore=settings.bridge_keystore,
        keystore_password=settings.bridge_keystore_password,
        private_key=settings.bridge_private_key,
    )
    vault_address, deploy_block = resolve_vault(settings)
    holder = default_holder_id()
    lease = LeaderLease(writer, signer.address, holder, ttl_s=settings.worker_lease_ttl_seconds)
    parts = _Parts()
    w3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 30}))

    def connect() -> None:
        parts.steps.clear()
        parts.steps.update(_chain_steps(settings, uow, w3, signer, holder, vault_address, deploy_block, metrics, parts))

    def step(name: str) -> Step:
        def run() -> object:
            fn = parts.steps.get(name)
            return None if fn is None else fn()

        return Step(name, run)

    def after_step(name: str, result: object) -> None:
        if name == "deposits":
            _report_deposits(uow, vault_address, result, metrics)

    return Worker(
        lease=lease,
        steps=[step("txmanager"), step("epochs"), step("withdrawals"), step("deposits")],
        connect=connect,
        recover=lambda: parts.txm.recover() if parts.txm is not None else None,
        fold=LedgerService(uow).fold,
        after_step=after_step,
        on_exit=engine.dispose,
        poll_s=settings.worker_poll_seconds,
        fold_s=settings.worker_fold_seconds,
        max_backoff_s=settings.worker_max_backoff_seconds,
        metrics=metrics,
    )


def _chain_steps(
    settings: Any,
    uow: Any,
    w3: Any,
    signer: Any,
    holder: str,
    vault_address: str,
    deploy_block: int | None,
    metrics: WorkerMetrics,
    parts: _Parts,
) -> dict[str, Callable[[], object]]:
    from tokenbridge.adapters.chain.indexer import Web3DepositSource
    from tokenbridge.adapters.chain.txmanager import GWEI, TxManager
    from tokenbridge.adapters.chain.vault import VaultClient
    from tokenbridge.services.deposits import DepositService
    from tokenbridge.services.withdrawals import build_settlement

    actual = int(w3.eth.chain_id)
    if actual != settings.chain_id:
        raise ConfigurationError(f"node at {settings.rpc_url} is on chain {actual}, expected {settings.chain_id}")
    vault = VaultClient(w3, vault_address)
    txm = TxManager(
        uow,
        w3,
        signer,
        chain_id=settings.chain_id,
        confirmations=settings.confirmations,
        reprice_after_s=settings.tx_reprice_after_seconds,
        fee_bump_pct=settings.tx_fee_bump_pct,
        max_in_flight=settings.tx_max_in_flight,
        max_fee_per_gas=int(settings.tx_max_fee_gwei * GWEI),
        lease_holder=holder,
        lease_ttl_s=settings.worker_lease_ttl_seconds,
        fence=True,  # only the live lease holder writes chain work
    )
    parts.txm = txm
    # a wiring error here (missing module, setting or argument) is a bug, not a node hiccup: it
    # ends the start-up (`StartupError`) instead of silently running without epochs or payouts
    try:
        settlement = build_settlement(settings, uow, txm, cast(Any, vault))
    except (ImportError, AttributeError, TypeError, NameError) as exc:
        raise StartupError(f"cannot build the settlement steps: {type(exc).__name__}: {exc}") from exc
    withdrawals = settlement.withdrawals

    def payouts() -> object:
        report = withdrawals.step()
        if report.submitted:
            txm.tick()  # broadcast the new payout txs now rather than one loop later
        return report

    steps: dict[str, Callable[[], object]] = {
        "txmanager": txm.tick,
        "epochs": settlement.epochs.step,
        "withdrawals": payouts,
    }
    start = settings.deposit_start_block if settings.deposit_start_block is not None else deploy_block
    if start is None:
        log.warning("no deposit start block known (TOKENBRIDGE_DEPOSIT_START_BLOCK): reading deposits from block 0")
        start = 0
    steps["deposits"] = DepositService(
        uow,
        Web3DepositSource(w3, vault_address),
        vault=vault_address,
        confirmations=settings.confirmations,
        start_block=start,
        max_range=settings.indexer_max_range,
        window=settings.indexer_window,
        on_alarm=metrics.alarm,
    ).step
    log.info("connected to chain %d, vault %s, signer %s", actual, vault_address, signer.address)
    return steps


def _report_deposits(uow: Any, vault: str, report: Any, metrics: WorkerMetrics) -> None:
    from tokenbridge.adapters.db.models_deposits import DepositStore

    with uow.read() as u:
        store = DepositStore(u.session)
        metrics.alarms_open.set(len(store.open_alarms()))
        state = store.state(vault)
        cursor = None if state is None else state.cursor_block
    halted = bool(getattr(report, "halted", False))
    metrics.indexer_halted.set(1 if halted else 0)
    head = getattr(report, "head", None)
    if head is not None and cursor is not None:
        metrics.indexer_lag.set(max(0, head - cursor))
    if getattr(report, "credited", 0):
        log.info("deposits: credited %d (%d units) of vault %s", report.credited, report.credited_amount, vault)


def install_signal_handlers(worker: Worker) -> None:
    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the current step, then stopping", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def run_worker(settings: Any) -> int:
    metrics = WorkerMetrics()
    if settings.worker_metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, registry=metrics.registry)
    worker = build_worker(settings, metrics)
    install_signal_handlers(worker)
    return worker.run()
