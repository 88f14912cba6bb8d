"""Settings: flags over environment over TOML file over defaults, declared once, validated once.

Each setting is one field of `Settings`: its type, default and bounds are the field's, and a
`Setting` annotation adds its help text. Its TOML key is the field's alias (else its name), and
the environment variable and the flag are spelled from that key (`timeout`: `FLOWSYNC_TIMEOUT`,
`--timeout`). `SETTINGS` lists them for everything that shows or reads settings: the command
line builds its options from it, `load_settings` its sources, the README test its table.

`load_settings` is the only place that reads the environment or the file. It returns one
frozen `Settings` object that the rest of flowsync receives as an argument. Every bad value
becomes a `ConfigError` that names the setting and where the value came from, before anything
is contacted. The secret is a `SecretStr`: its `str()` and `repr()` are asterisks, so it
cannot be printed by accident; only the request signer reads it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sync.core.chain import ChainHasher
from sync.core.selection import FlowSelection, parse_flow_ids
from sync.errors import ConfigError
from sync.store.database import safe_url
from sync.vendor.payload import DETAILS_CAP_BYTES, LISTING_CAP_BYTES

DEFAULT_CONFIG_FILE = Path("flowsync.toml")
ENV_PREFIX = "FLOWSYNC_"


@dataclass(frozen=True, slots=True)
class Setting:
    """What a `Settings` field needs besides its type, default and bounds to be offered to operators."""

    help: str
    flag: bool = True  # False: set only in the environment or the file (the key and the secret)
    echo: bool = True  # False: a bad value is never quoted back (a secret, a URL that may hold a password)
    metavar: str | None = None  # how --help names the value; by default its type (INTEGER, FLOAT, TEXT)


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
OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]


class Settings(BaseModel):
    """Everything a command needs to know, validated; immutable once built."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, populate_by_name=True
    )
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)  # by key, as `load_settings` found them

    database_url: Annotated[
        str,
        Setting("any SQLAlchemy URL (SQLite, PostgreSQL, MariaDB/MySQL)", echo=False, metavar="URL"),
    ] = Field(default="sqlite:///flowsync.db", repr=False)  # may hold a password
    base_url: Annotated[str, Setting("API base URL", echo=False, metavar="URL")] = (
        "https://api.itniotech.com/otp"
    )
    api_key: Annotated[OptionalText, Setting("account key (required by sync and run)", flag=False)] = None
    api_secret: Annotated[
        SecretStr | None,
        BeforeValidator(_optional_text),
        Setting(
            "account secret (required by sync and run); never printed, logged or stored",
            flag=False,
            echo=False,
        ),
    ] = None
    flow_ids: Annotated[
        FlowSelection | None,
        Setting("1,2,10-20 (IDs and inclusive ranges) or all (every flow the API lists)", metavar="IDS"),
    ] = None
    interval_s: Annotated[Number, Setting("seconds between scheduled runs")] = Field(
        default=300, gt=0, le=31 * 86400, alias="interval"
    )
    cron: Annotated[
        OptionalText,
        Setting("5-field crontab schedule in UTC, instead of the interval", metavar="CRONTAB"),
    ] = None
    concurrency: Annotated[Count, Setting("requests in flight at most")] = Field(default=8, ge=1, le=512)
    timeout_s: Annotated[Number, Setting("seconds for one HTTP request, start to end")] = Field(
        default=10, gt=0, le=600, alias="timeout"
    )
    retries: Annotated[Count, Setting("extra attempts for a transient failure of one request")] = Field(
        default=3, ge=0, le=20
    )
    # What a hostile or broken server can make flowsync read: an answer is refused as soon as it
    # passes its cap, on the wire or decompressed (sync/vendor/body.py). Derived in payload.py.
    max_details_bytes: Annotated[
        Count,
        Setting(
            "most bytes one /flow/details answer may decode to; a larger one is a payload error",
            metavar="BYTES",
        ),
    ] = Field(default=DETAILS_CAP_BYTES, ge=2**16, le=2**30)
    max_listing_bytes: Annotated[
        Count,
        Setting(
            "most bytes the /flow/list answer may decode to; a larger one fails the run", metavar="BYTES"
        ),
    ] = Field(default=LISTING_CAP_BYTES, ge=2**16, le=2**32)
    # Operations: how the sync can be watched.
    log_format: Annotated[Literal["text", "json"], Setting("text lines, or one JSON object a line")] = "text"
    metrics_file: Annotated[
        Path | None,
        BeforeValidator(_optional_text),
        Setting("after each run, write Prometheus metrics to this file (atomically)"),
    ] = None
    metrics_port: Annotated[
        Count | None, BeforeValidator(_optional_text), Setting("flowsync run serves /metrics on this port")
    ] = Field(default=None, ge=1, le=65535)
    metrics_host: Annotated[str, Setting("address the /metrics port listens on", metavar="HOST")] = (
        "127.0.0.1"
    )
    notify_url: Annotated[
        OptionalText,
        Setting(
            "POST a JSON summary here after a run that changed flows or whose status changed",
            echo=False,
            metavar="URL",
        ),
    ] = Field(default=None, repr=False)  # a webhook's URL holds its secret
    # Auditing: the key the history's chain is an HMAC under.
    audit_key: Annotated[
        SecretStr | None,
        BeforeValidator(_optional_text),
        Setting(
            "key of the history's audit chain (HMAC-SHA-256, not SHA-256); never printed, logged or stored",
            flag=False,
            echo=False,
        ),
    ] = None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            make_url(value)
        except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
            raise ValueError("not a database URL such as sqlite:///flowsync.db") from exc
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        _check_http_url(value, "https://api.itniotech.com/otp")
        return value.rstrip("/")

    @field_validator("notify_url")
    @classmethod
    def _notify_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        host = rest.split("/")[0]
        if scheme not in ("https", "http") or not sep or not host or "@" in host:
            raise ValueError("expected an http(s) URL without a user name or password, such as a webhook's")
        return value

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: str | None) -> str | None:
        if value is not None and (value != value.strip() or not value.isprintable() or not value.isascii()):
            # It travels in an HTTP header, which only carries ASCII.
            raise ValueError("must be printable ASCII text without surrounding spaces")
        return value

    @field_validator("api_secret", "audit_key")
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

    @property
    def interval_ignored(self) -> bool:
        """An interval was set, but a cron schedule replaces it (the worker says so at start)."""
        return self.cron is not None and "interval_s" in self.model_fields_set

    def source(self, key: str) -> str:
        """Where a setting's value came from: its flag, its variable, the file's key, or `default`."""
        return self._sources.get(key, "default")

    def require_api(self) -> ApiSettings:
        """The key, secret and flow IDs that `sync` and `run` cannot do without; checked once per command."""
        if self.api_key is None:
            raise ConfigError(SETTINGS["api_key"].env, "required by sync and run, but not set")
        if self.api_secret is None:
            raise ConfigError(SETTINGS["api_secret"].env, "required by sync and run, but not set")
        if self.flow_ids is None:
            raise ConfigError(
                SETTINGS["flow_ids"].env,
                "required by sync and run, but not set (IDs such as 1,2,10-20, or all)",
            )
        return ApiSettings(self.api_key, self.api_secret, self.flow_ids)

    @property
    def chain(self) -> ChainHasher:
        """How the history's audit chain is computed: HMAC under `audit_key` when set, else SHA-256."""
        return ChainHasher.keyed(self.audit_key.get_secret_value() if self.audit_key else None)


def _check_http_url(value: str, example: str) -> None:
    """An http(s) URL with a host and no credentials; `ValueError` says what is wrong, never quoting it.

    The API authenticates by its signed headers: a user name or password in its URL would only be
    sent as Basic auth to whoever answers, and shown wherever the URL is.
    """
    scheme, sep, rest = value.partition("://")
    if scheme not in ("https", "http") or not sep:
        raise ValueError(f"expected an http(s) URL such as {example}")
    if "@" in re.split(r"[/?#]", rest, maxsplit=1)[0]:
        raise ValueError(
            "must not hold a user name or password (the API authenticates by signed headers): "
            "remove everything between '://' and '@'"
        )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - reading it checks the port
    except ValueError:
        raise ValueError(f"expected an http(s) URL such as {example}, with a port from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"has no host name; expected an http(s) URL such as {example}")


def effective(settings: Settings) -> list[tuple[str, str, str]]:
    """Every setting as `flowsync config` shows it: key, value, source; secrets only as set or not.

    A database URL shows with its password masked, a notify URL without its path (a webhook's
    path is its secret).
    """
    rows = []
    for key, spec in SETTINGS.items():
        value = getattr(settings, spec.attribute)
        if isinstance(value, SecretStr):
            shown = "set"
        elif value is None:
            shown = "not set" if not spec.flag else "-"
        elif key == "database_url":
            shown = safe_url(value)
        elif key == "notify_url":
            scheme, _, rest = str(value).partition("://")
            shown = f"{scheme}://{rest.split('/')[0]}/..." if "/" in rest else str(value)
        else:
            shown = str(value)
        rows.append((key, shown, settings.source(key)))
    return rows


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The settings a sync cannot do without, known to be set: the account and the flows to fetch."""

    api_key: str
    api_secret: SecretStr
    flow_ids: FlowSelection


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One setting as operators see it: its names in each source, its value's shape, its help."""

    key: str  # in the TOML file, and the name `load_settings` takes a flag's value by
    attribute: str  # of `Settings`
    env: str
    flag: str | None
    metavar: str
    default: object  # None: no default
    help: str  # the declared text, followed by the bounds when there are any
    echo: bool


def _spec(attribute: str, field: FieldInfo) -> SettingSpec:
    """How a declared field is spelled and shown: the key from its alias or name, the rest from the key."""
    (setting,) = (item for item in field.metadata if isinstance(item, Setting))
    key = field.alias or attribute
    bounds = _bounds(field.metadata)
    return SettingSpec(
        key=key,
        attribute=attribute,
        env=ENV_PREFIX + key.upper(),
        flag="--" + key.replace("_", "-") if setting.flag else None,
        metavar=setting.metavar or _metavar(field.annotation),
        default=field.get_default(),
        help=f"{setting.help} ({bounds})" if bounds else setting.help,
        echo=setting.echo,
    )


def _metavar(annotation: object) -> str:
    """The value's type as click names it (`INTEGER`, `FLOAT`, `[text|json]`), so --help reads as usual."""
    choices = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(choices) == 1:  # optional: `int | None`
        annotation = choices[0]
    if get_origin(annotation) is Annotated:  # `Count | None`: the type inside `Count`
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Literal:
        return "[" + "|".join(str(choice) for choice in get_args(annotation)) + "]"
    return _TYPE_NAMES.get(annotation, "TEXT")


_TYPE_NAMES: dict[object, str] = {int: "INTEGER", float: "FLOAT", Path: "PATH"}


def _bounds(metadata: list[Any]) -> str:
    """The field's limits in words, as --help and the README show them: `more than 0, at most 600`."""
    words = {"gt": "more than", "ge": "at least", "lt": "less than", "le": "at most"}
    limits = {name: getattr(item, name) for item in metadata for name in words if hasattr(item, name)}
    if limits.keys() == {"ge", "le"}:
        return f"{limits['ge']}–{limits['le']}"
    return ", ".join(f"{words[name]} {limits[name]}" for name in words if name in limits)


SETTINGS: dict[str, SettingSpec] = {
    spec.key: spec for spec in (_spec(name, field) for name, field in Settings.model_fields.items())
}


def load_settings(
    flags: Mapping[str, object | None],
    environ: Mapping[str, str],
    config_file: Path | None = None,
    only: Sequence[str] | None = None,
) -> Settings:
    """Merge the sources (flags win) and validate; `ConfigError` names the bad setting and its source.

    With `only`, the other settings keep their defaults whatever the sources say (the demo and the
    simulator need nothing of a deployment's configuration but how to log).
    """
    file_values, file_label = _read_file(config_file)
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, spec in SETTINGS.items():
        if only is not None and name not in only:
            continue
        if flags.get(name) is not None and spec.flag:
            raw[name], origin[name] = flags[name], spec.flag
        elif spec.env in environ:
            raw[name], origin[name] = environ[spec.env], spec.env
        elif name in file_values:
            raw[name], origin[name] = file_values[name], f"{name} in {file_label}"
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc.errors(include_url=False)[0], origin) from None
    settings._sources.update(origin)
    return settings


def _config_error(error: ErrorDetails, origin: Mapping[str, str]) -> ConfigError:
    """Pydantic's first complaint, naming where each value involved came from.

    A rule across settings (a model validator) names the keys it involves in its error's
    context, as `settings`.
    """
    keys = [str(error["loc"][0])] if error["loc"] else list(error.get("ctx", {}).get("settings", ()))
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if (
        len(keys) == 1
        and keys[0] in SETTINGS
        and SETTINGS[keys[0]].echo
        and isinstance(value, str | int | float)
    ):
        message += f" (got {value!r})"
    return ConfigError(" and ".join(origin.get(key, key) for key in keys) or "configuration", message)


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
