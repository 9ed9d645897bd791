"""Settings from the environment (CONTRACT.md's variables); built on demand, never at import."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from payments.rates import FairRatePolicy


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = "sqlite:///./upah.db"
    redis_url: str | None = None
    celery_broker_url: str | None = None
    upah_env: Environment = Environment.DEVELOPMENT
    upah_secret_keys: str | None = None
    upah_signing_key: str | None = None
    upah_fair_rate_policy: FairRatePolicy = FairRatePolicy.WARN
    upah_sandbox_provider_url: str | None = None
    upah_data_dir: Path | None = Field(
        default=None, description="where generated keys live; beside the SQLite file by default"
    )
    upah_checkpoint_every: int = 1000
    upah_payout_approval_threshold: int = 50_000_000
    upah_minimum_payout: int = Field(default=10_000, ge=1, description="rupiah; smaller balances wait")
    upah_provider_fee: int = 2_500
    upah_payout_provider: str = "sandbox"
    upah_public_url: str = "http://127.0.0.1:8000"
    upah_sandbox_callback_secret: str | None = None
    upah_sandbox_faults: str = ""
    upah_provider_rate_per_second: int = Field(
        default=50, ge=1, description="payment instructions a second, all workers together"
    )
    upah_queue: str = "upah"
    upah_provider_timeout_seconds: float = 5.0
    upah_stale_after_seconds: float = 120.0
    upah_visibility_timeout: int = 300
    upah_stuck_after_seconds: int = Field(
        default=6 * 3600, description="the nightly reconciliation lists payouts unknown for longer than this"
    )
    upah_idempotency_retention_days: int = Field(
        default=30,
        ge=1,
        description="the beat forgets Idempotency-Key records (and their stored responses) after this",
    )
    upah_outbox_retention_days: int = Field(
        default=7,
        ge=1,
        description="the beat forgets outbox messages this long after they were relayed to the queue",
    )
    xendit_secret_key: str | None = None
    xendit_callback_token: str | None = None
    # Homeworker channels (issue 5). An unset gateway secret refuses that gateway's requests.
    upah_ussd_gateway_secret: str | None = Field(
        default=None, description="HMAC secret for X-Upah-Signature on POST /v1/gateway/ussd"
    )
    upah_ussd_gateway_token: str | None = Field(
        default=None, description="shared token (X-Upah-Gateway-Token) for USSD gateways that cannot sign"
    )
    upah_sms_gateway_secret: str | None = Field(
        default=None, description="HMAC secret for X-Upah-Signature on POST /v1/gateway/sms"
    )
    upah_sms_provider: str = Field(default="sandbox", description="outbound SMS: 'sandbox' or 'twilio'")
    upah_ussd_requests_per_minute: int = 20
    upah_sms_requests_per_minute: int = 10
    upah_ussd_session_timeout_seconds: int = 180
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = Field(
        default=None, description="sends SMS and verifies X-Twilio-Signature on inbound messages"
    )
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None

    @model_validator(mode="after")
    def _refuse_generated_secrets_in_production(self) -> Settings:
        if self.upah_env is Environment.PRODUCTION and not (self.upah_secret_keys and self.upah_signing_key):
            raise ValueError("UPAH_SECRET_KEYS and UPAH_SIGNING_KEY must be set in production")
        return self

    @property
    def broker_url(self) -> str | None:
        return self.celery_broker_url or self.redis_url

    @property
    def is_embedded(self) -> bool:
        return self.broker_url is None

    @property
    def data_dir(self) -> Path:
        if self.upah_data_dir is not None:
            return self.upah_data_dir
        if self.database_url.startswith("sqlite:///") and self.database_url != "sqlite:///:memory:":
            return Path(self.database_url.removeprefix("sqlite:///")).resolve().parent
        return Path.cwd()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
