"""Helpers every provider module shares: option parsing, the HttpClient, partial-failure handling."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

# One ConfigError everywhere; a provider raises it for a wrong entry, before any request is made.
from carbon_common.settings import ConfigError as ConfigError
from carbon_common.timeutil import utcnow
from carbon_feed.http import (
    AuthError,
    Clock,
    HttpClient,
    MalformedError,
    ProviderError,
    RateLimitedError,
    RequestObserver,
    RetryPolicy,
    Sleep,
    bucket_from_options,
)
from carbon_feed.secrets import Secret
from carbon_feed.validate import Collector


@dataclass(frozen=True, slots=True)
class Runtime:
    """Clocks and randomness, injectable so tests run retries and token expiry without real waiting."""

    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    wall: Callable[[], datetime] = utcnow
    rng: Callable[[], float] = random.random


def check_keys(kind: str, options: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Typos in config keys fail loudly instead of silently falling back to defaults."""
    common = {
        "kind",
        "name",
        "base_url",
        "zones",
        "rate_limit",
        "max_attempts",
        "base_delay",
        "max_delay",
        "request_timeout",
        "total_timeout",
        "max_retry_after",
    }
    # `interval` and `enabled` are the feed's own (carbon_feed.config takes them out of the options
    # before a provider sees them); a provider given them directly would only ignore them.
    unknown = set(options) - common - set(allowed)
    if unknown:
        raise ConfigError(f"{kind}: unknown option(s) {sorted(unknown)}")


def base_url(options: Mapping[str, Any], default: str | None) -> str:
    raw = options.get("base_url", default)
    if not isinstance(raw, str) or not raw:
        raise ConfigError("base_url is required (e.g. http://carbon-aware-sdk:8080)")
    url = URL(raw)
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"base_url must be an http(s) URL, got {raw!r}")
    if url.user or url.password:
        raise ConfigError("base_url must not carry credentials; use the token/password options")
    return raw.rstrip("/")


def zone_map(options: Mapping[str, Any]) -> dict[str, str] | None:
    """`zones:` is a list of our zone ids (sent to the provider as they are) or a mapping from our zone
    id to the provider's id. None means "any zone asked for, unchanged"."""
    raw = options.get("zones")
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list | tuple):
        return {str(z): str(z) for z in raw}
    raise ConfigError(f"zones must be a list or a mapping, got {type(raw).__name__}")


def option_int(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{key} must be an integer in {low}..{high}, got {value!r}")
    return value


def option_bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def make_http(
    name: str,
    options: Mapping[str, Any],
    session: aiohttp.ClientSession,
    observer: RequestObserver | None,
    runtime: Runtime,
    *,
    quota: tuple[int, float] | None,
    secrets: Iterable[Secret | None] = (),
) -> HttpClient:
    try:
        policy = RetryPolicy.from_options(options)
        bucket = bucket_from_options(options, default=quota, clock=runtime.clock, sleep=runtime.sleep)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    return HttpClient(
        name,
        session,
        policy=policy,
        bucket=bucket,
        observer=observer,
        secrets=secrets,
        clock=runtime.clock,
        sleep=runtime.sleep,
        wall=runtime.wall,
        rng=runtime.rng,
    )


def resolve_zones(
    collector: Collector, zones: Sequence[str], mapping: Mapping[str, str] | None
) -> list[tuple[str, str]]:
    """(our zone, provider id) pairs; zones the config does not map are reported, not fetched."""
    pairs: list[tuple[str, str]] = []
    for zone in zones:
        if mapping is None:
            pairs.append((zone, zone))
        elif zone in mapping:
            pairs.append((zone, mapping[zone]))
        else:
            collector.reject(f"{zone}: not in this provider's zones mapping", zone=zone)
    return pairs


async def per_zone(
    collector: Collector,
    pairs: Sequence[tuple[str, str]],
    fetch_one: Callable[[str, str], Awaitable[None]],
    *,
    auth_is_per_zone: bool = False,
) -> None:
    """Fetch zone by zone. One zone failing (unknown to the provider, a 5xx) is reported in `rejected`
    and the others still count; rate-limit failures stop the round because every further request
    would fail the same way, and so do auth failures unless the provider scopes keys per zone
    (`auth_is_per_zone`). If no zone succeeded, the first error is raised, with its type."""
    errors: list[ProviderError] = []
    for position, (zone, remote) in enumerate(pairs):
        try:
            await fetch_one(zone, remote)
        except RateLimitedError:
            raise
        except ProviderError as exc:
            if isinstance(exc, AuthError) and not auth_is_per_zone:
                raise
            errors.append(exc)
            collector.reject(f"{zone}: {exc}", zone=zone)
            if exc.outcome in ("timeout", "network"):
                # The host, not the zone, is the problem: waiting out the same timeouts for every
                # other zone would only hold the refresh loop (and its outer deadline) hostage.
                for other, _ in pairs[position + 1 :]:
                    collector.reject(f"{other}: skipped after a {exc.outcome} on {zone}", zone=other)
                if len(errors) == position + 1:  # nothing succeeded
                    raise
                return
    if errors and len(errors) == len(pairs):
        raise errors[0]


def expect_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def expect_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedError(f"{where}: expected a JSON array, got {type(value).__name__}")
    return value
