"""Configuration from `TOKENBRIDGE_*` environment variables (and an optional `.env`).

Validated once at start; a bad value is a one-line error naming the variable, never a
traceback. Secrets are `SecretStr` so they never appear in a repr or a log line.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tokenbridge.domain.errors import ConfigurationError

DEFAULT_STATE_DIR = Path(".tokenbridge")
_PUBLIC_WEBHOOK_SECRETS = frozenset({"whsec_dev_only_change_me"})  # once the default: anyone could sign with it


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOKENBRIDGE_", env_file=".env", extra="ignore")

    # storage
    database_url: str = Field(default=f"sqlite:///{DEFAULT_STATE_DIR / 'tokenbridge.sqlite3'}")

    # chain
    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: int = 31337
    confirmations: int = Field(default=2, ge=0, le=1000)
    deployments_dir: Path = Path("deployments")
    bridge_private_key: SecretStr | None = None
    bridge_keystore: Path | None = None
    bridge_keystore_password: SecretStr | None = None
    anvil_bin: str | None = None

    # ledger and API
    creator_bps: int = Field(default=7_000, ge=0, le=10_000)
    # no default: unset, the webhook endpoint answers 503 `webhooks-not-configured`
    webhook_secrets: SecretStr = SecretStr("")
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    daily_recharge_limit: int = Field(default=10**12, gt=0)
    daily_gift_limit: int = Field(default=10**12, gt=0)
    minor_daily_recharge_limit: int = Field(default=100 * 10**6, gt=0)
    minor_daily_gift_limit: int = Field(default=100 * 10**6, gt=0)

    # settlement (docs/settlement.md): epochs close every N seconds or M gifts; withdrawals
    epoch_max_age_seconds: float = Field(default=300.0, gt=0)
    epoch_max_gifts: int = Field(default=10_000, ge=1, le=1_000_000)
    epoch_rate_lead_seconds: float = Field(default=600.0, ge=0)
    chain_rate_cache_seconds: float = Field(default=5.0, ge=0)
    withdrawal_min_amount: int = Field(default=1_000_000, gt=0)  # 1 coin
    withdrawal_daily_cap: int = Field(default=10_000 * 10**6, gt=0)  # per creator per UTC day
    # withdrawals per payout transaction, at most; capped by the EIP-7825 gas bound (max_payout_batch())
    withdrawal_max_batch: int = Field(default=400, ge=1, le=10_000)

    # deposits indexer and worker loop (docs/operations.md)
    vault_address: str | None = None  # default: deployments/<chain_id>.json
    deposit_start_block: int | None = Field(default=None, ge=0)  # default: the vault's deploy block
    indexer_max_range: int = Field(default=2_000, ge=1, le=1_000_000)  # eth_getLogs blocks per call, at most
    indexer_window: int = Field(default=1_024, ge=8)  # recent block hashes kept to locate a fork
    worker_poll_seconds: float = Field(default=2.0, gt=0)
    worker_fold_seconds: float = Field(default=30.0, gt=0)
    worker_lease_ttl_seconds: float = Field(default=30.0, gt=0)
    worker_max_backoff_seconds: float = Field(default=60.0, gt=0)
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65_535)

    # transparency page (entrypoints/web, docs/verification.md): what the public page is told
    public_rpc_url: str | None = None  # default RPC URL shown to browsers; else rpc_url only when local
    public_explorer_url: str | None = None  # block explorer base URL, e.g. https://etherscan.io (tx links)
    public_log_range: int = Field(default=10_000, ge=1, le=1_000_000)  # blocks per eth_getLogs the page sends

    # transaction manager (docs/design/worker.md) and settlement retries (docs/settlement.md)
    tx_reprice_after_seconds: float = Field(default=60.0, gt=0)  # an unmined tx gets a new, higher-fee attempt
    tx_fee_bump_pct: int = Field(default=12, ge=1, le=1_000)  # both fee caps, per re-price (nodes want >= 10)
    tx_max_fee_gwei: float = Field(default=500.0, gt=0)  # never pay more per gas than this
    tx_max_in_flight: int = Field(default=16, ge=1, le=10_000)  # unmined txs per signer before submit waits
    settlement_max_attempts: int = Field(default=5, ge=1, le=1_000)  # failed sends before an item is `stuck`

    @field_validator("database_url")
    @classmethod
    def _database_url_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _no_public_webhook_secret(cls, value: SecretStr) -> SecretStr:
        if any(s.strip() in _PUBLIC_WEBHOOK_SECRETS for s in value.get_secret_value().split(",")):
            raise ValueError("holds the old published dev default; generate a secret of your own")
        return value

    def webhook_secret_list(self) -> list[bytes]:
        return [s.strip().encode() for s in self.webhook_secrets.get_secret_value().split(",") if s.strip()]


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning pydantic's error into a ConfigurationError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"TOKENBRIDGE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
