"""CLI: ``carbon-deferral`` / ``python -m deferral``.

Flags and environment variables are generated from `DeferralSettings`, so the three never drift:
field ``replan_interval`` is ``--replan-interval`` and ``CARBON_DEFERRAL_REPLAN_INTERVAL``. A flag wins
over the environment, which wins over the default. Booleans take ``--no-<flag>`` too.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import ssl
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes_asyncio.config import ConfigException

from carbon_common.jsonlog import setup_logging
from carbon_common.kube import KubeConfigError
from carbon_common.serving import run_app
from carbon_common.tls import CertReloader, server_ssl_context
from deferral.app import create_app
from deferral.settings import DeferralSettings

ENV_PREFIX = "CARBON_DEFERRAL_"
log = logging.getLogger("deferral")


def _field_type(field: dataclasses.Field[Any]) -> type:
    hint = typing.get_type_hints(DeferralSettings)[field.name]
    if isinstance(hint, types.UnionType):  # X | None
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))  # type: ignore[no-any-return]
    return hint  # type: ignore[no-any-return]


def _convert(kind: type, text: str, name: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{name}: expected true or false, got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}: expected {kind.__name__}, got {text!r}") from None


def parse_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> DeferralSettings:
    """Settings from flags, then CARBON_DEFERRAL_* variables, then defaults; SystemExit(2) on bad input."""
    environ = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="carbon-deferral", description=__doc__.splitlines()[0])
    fields = dataclasses.fields(DeferralSettings)
    for field in fields:
        flag = "--" + field.name.replace("_", "-")
        if _field_type(field) is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(flag, dest=field.name, default=None, metavar=field.name.upper())
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for field in fields:
        kind = _field_type(field)
        given = getattr(args, field.name)
        env_value = environ.get(ENV_PREFIX + field.name.upper())
        try:
            if given is not None:
                values[field.name] = given if kind is bool else _convert(kind, given, "--" + field.name)
            elif env_value is not None:
                values[field.name] = _convert(kind, env_value, ENV_PREFIX + field.name.upper())
        except ValueError as error:
            parser.error(str(error))
    settings = DeferralSettings(**values)
    if (settings.tls_cert is None) != (settings.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if not 0 < settings.retry_period < settings.renew_deadline < settings.lease_duration:
        parser.error("need 0 < --retry-period < --renew-deadline < --lease-duration")
    if settings.max_concurrent_releases < 1:
        parser.error(f"--max-concurrent-releases must be at least 1, got {settings.max_concurrent_releases}")
    if settings.tick <= 0 or settings.replan_interval <= 0:
        parser.error("--tick and --replan-interval must be positive")
    if settings.guard_margin is not None and settings.guard_margin < 0:
        parser.error(f"--guard-margin must be zero or more seconds, got {settings.guard_margin:g}")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    setup_logging(settings.log_level)
    context = None
    reloader = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        try:
            context = server_ssl_context(settings.tls_cert, settings.tls_key)
        except (OSError, ssl.SSLError) as error:
            log.error("cannot load the TLS certificate", extra={"error": str(error)})
            return 2
        # cert-manager rotates webhook certificates in place: reload them without a restart.
        reloader = CertReloader(context, settings.tls_cert, settings.tls_key)
    elif settings.webhook:
        log.warning("serving plain HTTP: the API server only calls webhooks over HTTPS (set --tls-cert)")
    try:
        # carbon_common.serving: read timeouts, a connection cap and a 5 s shutdown.
        run_app(
            create_app(settings, reloader=reloader),
            host=settings.host,
            port=settings.port,
            ssl_context=context,
        )
    except (KubeConfigError, ConfigException, OSError) as error:
        # No usable kubeconfig, or the port is taken: a start-up error to state plainly, not a traceback.
        log.error("cannot start", extra={"error": f"{type(error).__name__}: {error}"})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
