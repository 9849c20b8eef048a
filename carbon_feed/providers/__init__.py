"""Provider registry: `build_provider(kind, name, options, session, observer)` turns one config entry
into a Provider (carbon_feed.model.Provider).

Kinds: electricitymaps, watttime, ukgrid, carbonaware_sdk, static, and replay (carbon_feed.replay,
imported lazily so this package does not depend on it). Other modules may add kinds with
`register_kind`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from carbon_feed.http import (
    AuthError,
    MalformedError,
    ProviderError,
    RateLimitedError,
    RequestError,
    RequestObserver,
    UnavailableError,
)
from carbon_feed.model import Provider
from carbon_feed.providers._common import ConfigError, Runtime
from carbon_feed.providers.carbonaware_sdk import CarbonAwareSdkProvider
from carbon_feed.providers.electricitymaps import ElectricityMapsProvider
from carbon_feed.providers.static import StaticProvider
from carbon_feed.providers.ukgrid import UkGridProvider
from carbon_feed.providers.watttime import WattTimeProvider

Factory = Callable[
    [str, Mapping[str, Any], aiohttp.ClientSession, "RequestObserver | None", Runtime], Provider
]


def _replay(
    name: str,
    options: Mapping[str, Any],
    session: aiohttp.ClientSession,
    observer: RequestObserver | None,
    rt: Runtime,
) -> Provider:
    from carbon_feed.replay import ReplayProvider  # owned by feed core; lazy so either side builds alone

    provider: Provider = ReplayProvider(name, options)
    return provider


PROVIDER_KINDS: dict[str, Factory] = {
    "electricitymaps": ElectricityMapsProvider.from_options,
    "watttime": WattTimeProvider.from_options,
    "ukgrid": UkGridProvider.from_options,
    "carbonaware_sdk": CarbonAwareSdkProvider.from_options,
    "static": lambda name, options, session, observer, rt: StaticProvider.from_options(name, options),
    "replay": _replay,
}


def register_kind(kind: str, factory: Factory) -> None:
    """Add a provider kind from another module (tests, plug-ins)."""
    if kind in PROVIDER_KINDS:
        raise ValueError(f"provider kind {kind!r} is already registered")
    PROVIDER_KINDS[kind] = factory


def build_provider(
    kind: str,
    name: str,
    options: Mapping[str, Any],
    session: aiohttp.ClientSession,
    observer: RequestObserver | None = None,
    *,
    runtime: Runtime | None = None,
) -> Provider:
    """Build one provider; ConfigError (a ValueError) says what is wrong with the entry. No I/O."""
    factory = PROVIDER_KINDS.get(kind)
    if factory is None:
        raise ConfigError(
            f"provider {name!r}: unknown kind {kind!r} (known: {', '.join(sorted(PROVIDER_KINDS))})"
        )
    if not isinstance(options, Mapping):
        raise ConfigError(f"provider {name!r}: options must be a mapping")
    try:
        return factory(name, options, session, observer, runtime or Runtime())
    except ConfigError as exc:
        raise ConfigError(f"provider {name!r} ({kind}): {exc}") from None


__all__ = [
    "PROVIDER_KINDS",
    "AuthError",
    "ConfigError",
    "Factory",
    "MalformedError",
    "ProviderError",
    "RateLimitedError",
    "RequestError",
    "RequestObserver",
    "Runtime",
    "UnavailableError",
    "build_provider",
    "register_kind",
]
