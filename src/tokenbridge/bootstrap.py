"""Wire adapters to services. Nothing else constructs engines or services."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tokenbridge.adapters.db.engine import make_engine, session_factories
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.config import Settings
from tokenbridge.domain.accounts import DailyLimits
from tokenbridge.services._common import Clock, utc_clock
from tokenbridge.services.accounts import AccountService
from tokenbridge.services.api_keys import ApiKeyService
from tokenbridge.services.gifts import GiftService
from tokenbridge.services.health import HealthService
from tokenbridge.services.holds import HoldService
from tokenbridge.services.ledger import LedgerService
from tokenbridge.services.rates import FixedRate, RateProvider
from tokenbridge.services.recharge import PaymentService


@dataclass
class Services:
    accounts: AccountService
    gifts: GiftService
    payments: PaymentService
    api_keys: ApiKeyService
    health: HealthService
    ledger: LedgerService | None = None
    holds: HoldService | None = None
    engine: Engine | None = field(default=None, repr=False)
    uow: UnitOfWorkFactory | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def daily_limits(settings: Settings) -> DailyLimits:
    return DailyLimits(
        recharge=settings.daily_recharge_limit,
        gift=settings.daily_gift_limit,
        minor_recharge=settings.minor_daily_recharge_limit,
        minor_gift=settings.minor_daily_gift_limit,
    )


def build_services(
    settings: Settings,
    *,
    rate: RateProvider | None = None,
    clock: Clock = utc_clock,
    engine_options: Mapping[str, Any] | None = None,
) -> Services:
    """Build every ledger service on one engine for `settings.database_url`.

    The schema must already be migrated (`tokenbridge db upgrade`); `health.ready()` says so.
    `engine_options` go to `make_engine` (the API turns the per-checkout pre-ping off).
    """
    engine = make_engine(settings.database_url, **dict(engine_options or {}))
    uow = UnitOfWorkFactory(*session_factories(engine))
    limits = daily_limits(settings)
    return Services(
        accounts=AccountService(uow, clock),
        gifts=GiftService(uow, rate or FixedRate(settings.creator_bps), limits, clock),
        payments=PaymentService(uow, settings.webhook_secret_list(), limits, settings.webhook_tolerance_seconds, clock),
        api_keys=ApiKeyService(uow, clock),
        health=HealthService(engine, settings.database_url),
        ledger=LedgerService(uow),
        holds=HoldService(uow, clock),
        engine=engine,
        uow=uow,
    )


class ReadOnlySubmitter:
    """The tx-manager port for processes that must never send: the API serves settlement reads
    and places holds, but only the worker (the signer's lease holder) submits transactions."""

    def submit(self, session: Session, *, purpose: str, ref: str, to: str, data: bytes, gas: int) -> int:  # noqa: ARG002 (port signature)
        raise RuntimeError(f"this process does not send transactions ({purpose} {ref}); the worker does")

    def outcomes(self, session: Session, purpose: str) -> list[Any]:  # noqa: ARG002 (port signature)
        return []

    def mark_handled(self, session: Session, tx_id: int) -> None:  # noqa: ARG002 (port signature)
        raise RuntimeError("this process does not handle transaction outcomes; the worker does")


@dataclass
class ApiChain:
    """What the API process needs from the chain: the vault, the split rate in force, settlement reads."""

    vault: Any
    rate: RateProvider
    settlement: Any


def resolve_vault(settings: Settings) -> tuple[str, int | None]:
    """(vault address, deploy block or None): TOKENBRIDGE_VAULT_ADDRESS, else deployments/<chain_id>.json."""
    import json

    from eth_utils.address import is_address, to_checksum_address

    from tokenbridge.domain.errors import ConfigurationError

    path = settings.deployments_dir / f"{settings.chain_id}.json"
    record: dict[str, Any] = {}
    if path.exists():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{path} is not a deployment record: {type(exc).__name__}") from None
    address = settings.vault_address or record.get("vault")
    if not isinstance(address, str) or not is_address(address):
        raise ConfigurationError(f"no vault: set TOKENBRIDGE_VAULT_ADDRESS or deploy (no record at {path})")
    address = to_checksum_address(address)
    block = record.get("deploy_block") if str(record.get("vault", "")).lower() == address.lower() else None
    return address, int(block) if isinstance(block, int) else None


def build_api_chain(settings: Settings) -> ApiChain | None:
    """The chain side of the API, or None when no vault is configured (ledger-only mode:
    gifts use the fixed rate from settings and settlement routes answer 503)."""
    from tokenbridge.domain.errors import ConfigurationError

    try:
        address, _ = resolve_vault(settings)
    except ConfigurationError:
        if settings.vault_address:
            raise
        return None
    from tokenbridge.adapters.chain.reader import connect
    from tokenbridge.adapters.chain.vault import VaultClient
    from tokenbridge.services.chain_rate import ChainRate

    w3 = connect(settings.rpc_url)
    # the API only reads (eth_call) and never sends: web3's validation middleware would ask
    # eth_chainId twice per call (3 round trips instead of 1)
    if "validation" in w3.middleware_onion:
        w3.middleware_onion.remove("validation")
    vault = VaultClient(w3, address)
    return ApiChain(vault=vault, rate=ChainRate(vault, ttl_s=settings.chain_rate_cache_seconds), settlement=None)


def attach_settlement(settings: Settings, services: Services, chain: ApiChain) -> None:
    """Build the settlement read services on the API's own unit-of-work factory."""
    from tokenbridge.services.withdrawals import build_settlement

    if services.uow is None:
        raise RuntimeError("services were built without a unit-of-work factory")
    chain.settlement = build_settlement(settings, services.uow, ReadOnlySubmitter(), chain.vault)
