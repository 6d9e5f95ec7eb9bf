"""Settings from environment variables and `.env` (pydantic-settings).

Nested groups are read with a double underscore: `TELEGRAM__TOKEN`, `DB__URL`, ...
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TelegramSettings(BaseModel):
    """The Telegram channel."""

    token: SecretStr | None = None
    api_base_url: str = "https://api.telegram.org"
    mode: str = Field(default="polling", pattern="^(polling|webhook)$")
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    polling_timeout: int = Field(default=25, ge=0, le=50)

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        head, _, tail = value.get_secret_value().partition(":")
        if not head.isdigit() or not tail:
            raise ValueError("expected the shape <digits>:<text>, as @BotFather gives it")
        return value

    @model_validator(mode="after")
    def _webhook_complete(self) -> "TelegramSettings":
        if self.mode == "webhook":
            if not self.webhook_url or not self.webhook_url.startswith("https://"):
                raise ValueError("webhook mode needs TELEGRAM__WEBHOOK_URL, an https:// address")
            secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
            if not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", secret):
                raise ValueError("webhook mode needs TELEGRAM__WEBHOOK_SECRET: 16-256 of A-Z a-z 0-9 _ -")
        return self


class HttpSettings(BaseModel):
    """The HTTP server: webhook, /healthz, /readyz, /metrics."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)


class VkSettings(BaseModel):
    """The VK community channel."""

    token: SecretStr | None = None
    group_id: int | None = None
    api_base_url: str = "https://api.vk.ru"
    requests_per_second: float = 20.0


class DbSettings(BaseModel):
    """The database: SQLite file by default, PostgreSQL by URL."""

    url: str = "sqlite+aiosqlite:///./data/bot.sqlite3"
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value.split(":///", 1)[1]
        if not (value.startswith("sqlite+aiosqlite://") or value.startswith("postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///path or postgresql+asyncpg://user:pass@host/db")
        return value


class MatchingSettings(BaseModel):
    """Weights of the mentor–mentee score (see storage/services/matching.py)."""

    same_school: int = 4
    same_subject: int = 3
    per_deficit: int = 1
    max_deficits: int = Field(default=3, ge=0)
    same_kind: int = 1
    per_existing_mentee: int = Field(default=-1, le=0)
    min_score: int = 1


class LimitsSettings(BaseModel):
    """Outgoing message limits (Telegram FAQ: ~30 msg/s overall, ~1 msg/s per chat)."""

    telegram_per_second: float = 30.0
    telegram_per_chat_per_second: float = 1.0
    vk_per_second: float = 20.0


class Settings(BaseSettings):
    """All settings of one bot installation."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_nested_delimiter="__", extra="ignore"
    )

    telegram: TelegramSettings = TelegramSettings()
    vk: VkSettings = VkSettings()
    http: HttpSettings = HttpSettings()
    db: DbSettings = DbSettings()
    limits: LimitsSettings = LimitsSettings()
    matching: MatchingSettings = MatchingSettings()
    data_dir: Path = Path("./data")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    quiet_hours: str = Field(default="22:00-08:00", pattern=r"^\d\d:\d\d-\d\d:\d\d$")
    idle_pair_days: int = Field(default=14, ge=1)
    demo_data: bool = True


class SettingsError(SystemExit):
    """A setting is missing or malformed: one line naming the variable and the fix."""


def env_name(loc: tuple) -> str:
    """The environment variable name for a pydantic error location."""
    return "__".join(str(part).upper() for part in loc if not isinstance(part, int))


def load_settings(**overrides) -> Settings:
    """Build settings, turning a validation error into one clear line."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        name = env_name(first["loc"])
        raise SettingsError(
            f"Setting {name} is invalid: {first['msg']}. Fix {name} in the environment or in .env."
        ) from None
