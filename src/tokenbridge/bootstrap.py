"""Wire adapters to services. Nothing else constructs engines or services."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

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


def build_services(settings: Settings, *, rate: RateProvider | None = None, clock: Clock = utc_clock) -> Services:
    """Build every ledger service on one engine for `settings.database_url`.

    The schema must already be migrated (`tokenbridge db upgrade`); `health.ready()` says so.
    """
    engine = make_engine(settings.database_url)
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
    )
