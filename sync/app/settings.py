"""Settings: flags over environment over TOML file over defaults, validated once.

`load_settings` is the only place that reads the environment or the file. It
returns one frozen `Settings` object that the rest of flowsync receives as an
argument. Every bad value becomes a `ConfigError` that names the setting and
where the value came from, before anything is contacted. The secret is a
`SecretStr`: its `str()` and `repr()` are asterisks, so it cannot be printed by
accident; only the request signer reads it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sync.core.selection import FlowSelection, parse_flow_ids
from sync.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("flowsync.toml")


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """How one setting is spelled in each source."""

    env: str
    flag: str | None


SETTINGS: dict[str, SettingSpec] = {
    "database_url": SettingSpec("FLOWSYNC_DATABASE_URL", "--database-url"),
    "base_url": SettingSpec("FLOWSYNC_BASE_URL", "--base-url"),
    "api_key": SettingSpec("FLOWSYNC_API_KEY", None),
    "api_secret": SettingSpec("FLOWSYNC_API_SECRET", None),
    "flow_ids": SettingSpec("FLOWSYNC_FLOW_IDS", "--flow-ids"),
    "interval": SettingSpec("FLOWSYNC_INTERVAL", "--interval"),
    "cron": SettingSpec("FLOWSYNC_CRON", "--cron"),
    "concurrency": SettingSpec("FLOWSYNC_CONCURRENCY", "--concurrency"),
    "timeout": SettingSpec("FLOWSYNC_TIMEOUT", "--timeout"),
    "retries": SettingSpec("FLOWSYNC_RETRIES", "--retries"),
}


def _strict_number(value: object) -> object:
    # pydantic would read `true` as 1; a boolean is never a meant number of seconds or requests.
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value.strip() if isinstance(value, str) else value


def _optional_text(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


Number = Annotated[float, BeforeValidator(_strict_number), Field(allow_inf_nan=False)]
Count = Annotated[int, BeforeValidator(_strict_number)]


class Settings(BaseModel):
    """Everything a command needs to know, validated; immutable once built."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, populate_by_name=True
    )

    database_url: str = Field(default="sqlite:///flowsync.db", repr=False)  # may hold a password
    base_url: str = "https://api.itniotech.com/otp"
    api_key: Annotated[str | None, BeforeValidator(_optional_text)] = None
    api_secret: Annotated[SecretStr | None, BeforeValidator(_optional_text)] = None
    flow_ids: FlowSelection | None = None
    interval_s: Number = Field(default=300, gt=0, le=31 * 86400, alias="interval")
    cron: Annotated[str | None, BeforeValidator(_optional_text)] = None
    concurrency: Count = Field(default=8, ge=1, le=512)
    timeout_s: Number = Field(default=10, gt=0, le=600, alias="timeout")
    retries: Count = Field(default=3, ge=0, le=20)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            make_url(value)
        except ArgumentError as exc:
            raise ValueError("not a database URL such as sqlite:///flowsync.db") from exc
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if scheme not in ("https", "http") or not sep or not rest.split("/")[0]:
            raise ValueError("expected an http(s) URL such as https://api.itniotech.com/otp")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: str | None) -> str | None:
        if value is not None and (value != value.strip() or not value.isprintable() or not value.isascii()):
            # It travels in an HTTP header, which only carries ASCII.
            raise ValueError("must be printable ASCII text without surrounding spaces")
        return value

    @field_validator("api_secret")
    @classmethod
    def _api_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().isprintable():
            raise ValueError("must be printable text")  # never echo any part of it
        return value

    @field_validator("flow_ids", mode="before")
    @classmethod
    def _flow_ids(cls, value: object) -> object:
        if value is None or isinstance(value, FlowSelection):
            return value
        if isinstance(value, str) and not value.strip():
            return None
        if not isinstance(value, str | int | list):
            raise ValueError("expected flow IDs such as '1,2,10-20' or 'all'")
        return parse_flow_ids(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            # APScheduler checks the expression; imported only when there is one, so that a
            # `flowsync sync` started by cron every few minutes does not load the scheduler.
            from sync.app.schedule import crontab_trigger  # noqa: PLC0415

            crontab_trigger(value)
        return value

    def require_api(self) -> ApiSettings:
        """The key, secret and flow IDs that `sync` and `run` cannot do without; checked once per command."""
        if self.api_key is None:
            raise ConfigError("FLOWSYNC_API_KEY", "required by sync and run, but not set")
        if self.api_secret is None:
            raise ConfigError("FLOWSYNC_API_SECRET", "required by sync and run, but not set")
        if self.flow_ids is None:
            raise ConfigError(
                "FLOWSYNC_FLOW_IDS", "required by sync and run, but not set (IDs such as 1,2,10-20, or all)"
            )
        return ApiSettings(self.api_key, self.api_secret, self.flow_ids)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The settings a sync cannot do without, known to be set: the account and the flows to fetch."""

    api_key: str
    api_secret: SecretStr
    flow_ids: FlowSelection


def load_settings(
    flags: Mapping[str, object | None],
    environ: Mapping[str, str],
    config_file: Path | None = None,
) -> Settings:
    """Merge the sources (flags win) and validate; `ConfigError` names the bad setting and its source."""
    file_values, file_label = _read_file(config_file)
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, spec in SETTINGS.items():
        if flags.get(name) is not None and spec.flag:
            raw[name], origin[name] = flags[name], spec.flag
        elif spec.env in environ:
            raw[name], origin[name] = environ[spec.env], spec.env
        elif name in file_values:
            raw[name], origin[name] = file_values[name], f"{name} in {file_label}"
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = str(error["loc"][0]) if error["loc"] else "configuration"
        message = str(error["msg"]).removeprefix("Value error, ")
        if name not in ("api_secret", "database_url") and isinstance(error.get("input"), str | int | float):
            message += f" (got {error['input']!r})"  # never for the secret or a URL that may hold a password
        raise ConfigError(origin.get(name, name), message) from None


def _read_file(path: Path | None) -> tuple[dict[str, Any], str]:
    """The TOML file's settings: the one named by --config, else ./flowsync.toml when present."""
    explicit = path is not None
    path = path if path is not None else DEFAULT_CONFIG_FILE
    if not path.exists():
        if explicit:
            raise ConfigError("--config", f"{path}: no such file")
        return {}, str(path)
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read ({exc.strerror})") from None
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise ConfigError(
            f"{unknown[0]} in {path}", f"unknown setting (known: {', '.join(sorted(SETTINGS))})"
        )
    return values, str(path)
