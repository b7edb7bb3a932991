"""Configuration from the environment (and an optional `.env` file).

The variable names are a public contract (see docs/configuration.md); the
defaults are chosen for production, tests tighten the timings through the same
variables.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.redis_urls import is_redis, is_sentinel

DEFAULT_API_URL = "https://amped-express.interakt.ai/api/v17.0"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"


# The TTLs (seconds) of keys that hold a customer's number, by field and variable; retention caps
# them all, and is the default of those it names in RETENTION_DEFAULTS.
RETAINED = {
    "idempotency_ttl": "DISPATCH_IDEMPOTENCY_TTL",
    "dead_letter_ttl": "DISPATCH_DEAD_LETTER_TTL",
    "result_expires": "DISPATCH_RESULT_EXPIRES",
    "api_idempotency_ttl": "DISPATCH_API_IDEMPOTENCY_TTL",
}
RETENTION_DEFAULTS = ("idempotency_ttl", "dead_letter_ttl")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Interakt / WhatsApp Cloud API
    api_url: str = Field(DEFAULT_API_URL, validation_alias="INTERAKT_API_URL")
    access_token: SecretStr | None = Field(None, validation_alias="INTERAKT_ACCESS_TOKEN")
    access_token_file: Path | None = Field(None, validation_alias="INTERAKT_ACCESS_TOKEN_FILE")
    waba_id: str = Field("", validation_alias="INTERAKT_WABA_ID")
    phone_number_id: str = Field("", validation_alias="INTERAKT_PHONE_NUMBER_ID")

    # Several senders (worker.delivery.senders): a TOML file; without it, INTERAKT_* is the only one.
    senders_file: Path | None = Field(None, validation_alias="DISPATCH_SENDERS")

    # Redis: one URL for both unless the Celery-specific ones override it.
    redis_url: str = Field(DEFAULT_REDIS_URL, validation_alias="REDIS_URL")
    broker_url: str | None = Field(None, validation_alias="CELERY_BROKER_URL")
    result_backend: str | None = Field(None, validation_alias="CELERY_RESULT_BACKEND")
    # Sentinel URLs (sentinel://host:26379;sentinel://host2:26379/0): the primary's name, and the
    # Sentinels' own password where they need one (the primary's goes in the URL).
    sentinel_master: str = Field("mymaster", min_length=1, validation_alias="DISPATCH_SENTINEL_MASTER")
    sentinel_password: SecretStr | None = Field(None, validation_alias="DISPATCH_SENTINEL_PASSWORD")
    # The write that fences a send (its `sending` mark, and the claim before it) and a publish to
    # the Redis broker wait for this many replicas to have them (Redis WAIT), at most
    # DISPATCH_REPLICA_WAIT_MS; unset, 1 with a Sentinel URL (there are replicas), else 0.
    replica_acks: int | None = Field(None, ge=0, validation_alias="DISPATCH_REPLICA_ACKS")
    replica_wait_ms: int = Field(100, ge=1, validation_alias="DISPATCH_REPLICA_WAIT_MS")
    # RabbitMQ: the project's queues declared as quorum queues (replicated), publisher confirms on.
    quorum_queues: bool = Field(False, validation_alias="DISPATCH_QUORUM_QUEUES")

    # HTTP timeouts (seconds). A read timeout is ambiguous: the message may have gone out.
    connect_timeout: float = Field(5.0, validation_alias="DISPATCH_CONNECT_TIMEOUT")
    read_timeout: float = Field(20.0, validation_alias="DISPATCH_READ_TIMEOUT")
    http_pool_size: int = Field(128, validation_alias="DISPATCH_HTTP_POOL_SIZE")

    # Retry policy: quick retries inside the task, longer waits handed back to the queue.
    inline_attempts: int = Field(3, validation_alias="DISPATCH_INLINE_ATTEMPTS")
    inline_backoff: float = Field(0.5, validation_alias="DISPATCH_INLINE_BACKOFF")
    inline_max_wait: float = Field(5.0, validation_alias="DISPATCH_INLINE_MAX_WAIT")
    requeue_backoff: float = Field(30.0, validation_alias="DISPATCH_REQUEUE_BACKOFF")
    requeue_max_wait: float = Field(600.0, validation_alias="DISPATCH_REQUEUE_MAX_WAIT")
    max_attempts: int = Field(40, validation_alias="DISPATCH_MAX_ATTEMPTS")
    max_age: float = Field(3600.0, validation_alias="DISPATCH_MAX_AGE")

    # Rate limits (Meta "Throughput" and "Pair rate limits") and the account circuit breaker
    rate_limit: float = Field(80.0, gt=0, le=1000, validation_alias="DISPATCH_RATE_LIMIT")
    pair_interval: float = Field(6.0, ge=0, validation_alias="DISPATCH_PAIR_INTERVAL")
    pair_burst: int = Field(45, ge=1, validation_alias="DISPATCH_PAIR_BURST")
    rate_headroom: float = Field(0.05, ge=0, lt=0.5, validation_alias="DISPATCH_RATE_HEADROOM")
    # Meta's messaging limit of this account (unique template recipients a rolling 24 h): unset, none.
    daily_limit: int | None = Field(None, gt=0, validation_alias="DISPATCH_DAILY_LIMIT")
    campaign_share: float = Field(0.9, gt=0, le=1, validation_alias="DISPATCH_CAMPAIGN_SHARE")
    # How far ahead a campaign lane reserves slots; never more than half of DISPATCH_SLOT_MAX_AHEAD
    # (RateLimiter.lane_horizon), so a transactional message always finds a slot before it would
    # be parked.
    lane_max_ahead: float = Field(0.1, gt=0, validation_alias="DISPATCH_LANE_MAX_AHEAD")
    # A thread sleeps for a slot this long at most (a number holds at most rate x this many
    # threads); an intent further back is parked in Redis (worker.delivery.parking).
    slot_max_ahead: float = Field(0.25, gt=0, validation_alias="DISPATCH_SLOT_MAX_AHEAD")
    campaign_chunk: int = Field(100, ge=1, le=10000, validation_alias="DISPATCH_CAMPAIGN_CHUNK")
    chunk_resume_after: float = Field(120.0, gt=0, validation_alias="DISPATCH_CHUNK_RESUME_AFTER")
    sweep_interval: float = Field(30.0, gt=0, validation_alias="DISPATCH_SWEEP_INTERVAL")
    campaign_threads: int = Field(64, ge=1, validation_alias="DISPATCH_CAMPAIGN_THREADS")
    rate_recovery: float = Field(0.05, gt=0, validation_alias="DISPATCH_RATE_RECOVERY")
    breaker_probe_interval: float = Field(30.0, gt=0, validation_alias="DISPATCH_BREAKER_PROBE_INTERVAL")

    # Retention: the longest anything holding a customer's number is kept; the TTLs below that
    # hold one default to it (the idempotency records and dead letters) or may not exceed it.
    retention_days: float = Field(30, gt=0, validation_alias="DISPATCH_RETENTION_DAYS")

    # Delivery guarantees
    at_least_once: bool = Field(False, validation_alias="DISPATCH_AT_LEAST_ONCE")
    idempotency_ttl: int = Field(30 * 24 * 3600, gt=0, validation_alias="DISPATCH_IDEMPOTENCY_TTL")
    result_expires: int = Field(7 * 24 * 3600, validation_alias="DISPATCH_RESULT_EXPIRES")
    visibility_timeout: int = Field(7200, validation_alias="DISPATCH_VISIBILITY_TIMEOUT")
    restore_interval: int = Field(10, ge=1, validation_alias="DISPATCH_RESTORE_INTERVAL")
    dead_letter_ttl: int = Field(30 * 24 * 3600, gt=0, validation_alias="DISPATCH_DEAD_LETTER_TTL")
    publish_max_retries: int = Field(10, ge=0, validation_alias="DISPATCH_PUBLISH_MAX_RETRIES")

    # Webhooks (worker.web): secrets are comma-separated so one can be rotated without downtime.
    webhook_secret: SecretStr | None = Field(None, validation_alias="DISPATCH_WEBHOOK_SECRET")
    webhook_verify_token: SecretStr | None = Field(None, validation_alias="DISPATCH_WEBHOOK_VERIFY_TOKEN")
    status_task: str | None = Field(None, validation_alias="DISPATCH_STATUS_TASK")
    inbound_task: str | None = Field(None, validation_alias="DISPATCH_INBOUND_TASK")
    payment_task: str | None = Field(None, validation_alias="DISPATCH_PAYMENT_TASK")
    # A change recorded but not told this long (its worker died before enqueuing the app's task or
    # queuing its callback) is told again by another worker (worker.statuses.telling).
    tell_lease: float = Field(30.0, gt=0, validation_alias="DISPATCH_TELL_LEASE")
    auto_read: bool = Field(False, validation_alias="DISPATCH_AUTO_READ")
    window_check: bool = Field(False, validation_alias="DISPATCH_WINDOW_CHECK")
    # Marketing opt-outs (worker.delivery.optouts): an inbound message that is one of these
    # (comma-separated, any case) opts its customer out of marketing messages, or back in.
    optout_keywords: str = Field(
        "STOP,UNSUBSCRIBE,STOP PROMOTIONS,रोकें,रोको,बंद करें,बंद करो,band karo,band karen",
        validation_alias="DISPATCH_OPTOUT_KEYWORDS",
    )
    optin_keywords: str = Field(
        "START,शुरू करें,शुरू करो,shuru karo,shuru karen", validation_alias="DISPATCH_OPTIN_KEYWORDS"
    )

    # Status callbacks over HTTP (worker.callbacks): a URL and secret per API key name (TOML).
    callbacks_file: Path | None = Field(None, validation_alias="DISPATCH_CALLBACKS_FILE")
    callback_allow_hosts: str = Field("", validation_alias="DISPATCH_CALLBACK_ALLOW_HOSTS")
    callback_timeout: float = Field(10.0, gt=0, validation_alias="DISPATCH_CALLBACK_TIMEOUT")
    callback_backoff: float = Field(1.0, gt=0, validation_alias="DISPATCH_CALLBACK_BACKOFF")
    callback_max_wait: float = Field(3600.0, gt=0, validation_alias="DISPATCH_CALLBACK_MAX_WAIT")
    callback_max_age: float = Field(24 * 3600.0, gt=0, validation_alias="DISPATCH_CALLBACK_MAX_AGE")
    callback_threads: int = Field(8, ge=1, validation_alias="DISPATCH_CALLBACK_THREADS")

    # The HTTP API (worker.web.api): keys as `name:sha256hex[:sender|sender]`, see worker.web.auth.
    api_keys: SecretStr | None = Field(None, validation_alias="DISPATCH_API_KEYS")
    api_keys_file: Path | None = Field(None, validation_alias="DISPATCH_API_KEYS_FILE")
    # The names of the keys that may erase a customer (DELETE /v1/customers/{number}), by commas.
    erasure_keys: str = Field("", validation_alias="DISPATCH_ERASURE_KEYS")
    api_rate_limit: int = Field(1000, ge=1, validation_alias="DISPATCH_API_RATE_LIMIT")
    api_idempotency_ttl: int = Field(24 * 3600, ge=1, validation_alias="DISPATCH_API_IDEMPOTENCY_TTL")

    # Crash recovery (worker.recovery): a worker that has not beaten for the timeout is dead; its
    # messages go back to the queues at once, and the ledger is audited a grace period later.
    heartbeat_interval: float = Field(2.0, gt=0, validation_alias="DISPATCH_HEARTBEAT_INTERVAL")
    heartbeat_timeout: float = Field(10.0, gt=0, validation_alias="DISPATCH_HEARTBEAT_TIMEOUT")
    audit_grace: float = Field(10.0, gt=0, validation_alias="DISPATCH_AUDIT_GRACE")
    audit_interval: float = Field(60.0, gt=0, validation_alias="DISPATCH_AUDIT_INTERVAL")

    beat_interval: float = Field(5.0, gt=0, validation_alias="DISPATCH_BEAT_INTERVAL")

    # Template registry: re-synced by beat; the template endpoints allow ~200 requests an hour.
    template_sync_interval: float = Field(3600.0, gt=0, validation_alias="DISPATCH_TEMPLATE_SYNC_INTERVAL")
    template_resync_min_interval: float = Field(
        60.0, ge=0, validation_alias="DISPATCH_TEMPLATE_RESYNC_MIN_INTERVAL"
    )
    template_sync_backoff: float = Field(10.0, gt=0, validation_alias="DISPATCH_TEMPLATE_SYNC_BACKOFF")

    # Media: link -> uploaded id, fetched safely (see worker/delivery/media.py)
    media_upload_links: bool = Field(False, validation_alias="DISPATCH_MEDIA_UPLOAD_LINKS")
    media_allow_hosts: str = Field("", validation_alias="DISPATCH_MEDIA_ALLOW_HOSTS")
    media_cache_ttl: int = Field(29 * 24 * 3600, gt=0, validation_alias="DISPATCH_MEDIA_CACHE_TTL")
    # A link's media id is used this long (seconds) before the link is looked at again (a
    # conditional GET), so new content at the same URL is sent within this time of its change.
    media_revalidate_after: float = Field(300.0, ge=0, validation_alias="DISPATCH_MEDIA_REVALIDATE_AFTER")

    metrics_port: int = Field(0, ge=0, le=65535, validation_alias="DISPATCH_METRICS_PORT")
    metrics_addr: str = Field("0.0.0.0", validation_alias="DISPATCH_METRICS_ADDR")

    log_level: str = Field("INFO", validation_alias="DISPATCH_LOG_LEVEL")

    @model_validator(mode="after")
    def _retention(self) -> Settings:
        """DISPATCH_RETENTION_DAYS is the default of the TTLs of what holds a number, and their cap:
        a TTL set longer than it is a contradiction, refused at start with its name."""
        retention = int(self.retention_days * 24 * 3600)
        for name, variable in RETAINED.items():
            if name not in self.model_fields_set:
                default = getattr(self, name)
                setattr(self, name, retention if name in RETENTION_DEFAULTS else min(default, retention))
            elif getattr(self, name) > retention:
                days = getattr(self, name) / 86400
                raise ValueError(
                    f"{variable} ({days:g} days) is longer than DISPATCH_RETENTION_DAYS "
                    f"({self.retention_days:g}): nothing holding a number may be kept longer"
                )
        return self

    @model_validator(mode="after")
    def _token_from_file(self) -> Settings:
        """A mounted secret file (Kubernetes, Docker secrets) wins over nothing, never over the env."""
        if self.access_token is None and self.access_token_file is not None:
            self.access_token = SecretStr(self.access_token_file.read_text().strip())
        return self

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def celery_result_backend(self) -> str:
        return self.result_backend or self.redis_url

    @property
    def replicas_waited(self) -> int:
        """DISPATCH_REPLICA_ACKS, or its default: 1 behind Sentinels, none for one server."""
        if self.replica_acks is not None:
            return self.replica_acks
        return 1 if is_sentinel(self.state_redis_url) else 0

    @property
    def state_redis_url(self) -> str:
        """Idempotency records, limits and dead letters live beside the results."""
        backend = self.celery_result_backend
        return backend if is_redis(backend) else self.redis_url

    @property
    def media_allowed_hosts(self) -> frozenset[str]:
        """DISPATCH_MEDIA_ALLOW_HOSTS: comma-separated host names (or host:port) exempt from the
        public-address rule of media fetches."""
        return frozenset(h.strip().lower() for h in self.media_allow_hosts.split(",") if h.strip())

    @property
    def callback_allowed_hosts(self) -> frozenset[str]:
        """DISPATCH_CALLBACK_ALLOW_HOSTS: host names (or host:port) exempt from the public-address
        rule of callback URLs, as DISPATCH_MEDIA_ALLOW_HOSTS is for media links."""
        return frozenset(h.strip().lower() for h in self.callback_allow_hosts.split(",") if h.strip())

    @property
    def webhook_secrets(self) -> list[bytes]:
        """Every secret a webhook may be signed with (DISPATCH_WEBHOOK_SECRET, comma-separated)."""
        raw = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        return [part.strip().encode() for part in raw.split(",") if part.strip()]

    @property
    def redis_broker(self) -> bool:
        return is_redis(self.celery_broker_url)

    @property
    def messages_url(self) -> str:
        return f"{self.api_url.rstrip('/')}/{self.phone_number_id}/messages"


class SettingsError(ValueError):
    """Settings that cannot be used: each variable and why, never a value (it may be a token)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(problems(exc)) from None


def problems(exc: ValidationError) -> str:
    """One line naming each variable that is wrong and why. Pydantic's own text shows the input,
    which for a check of the whole model is every variable read, tokens included."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors(include_url=False, include_input=False)
    )
