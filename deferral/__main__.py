"""CLI: ``carbon-deferral`` / ``python -m deferral``.

Flags and environment variables are generated from `DeferralSettings`, so the three never drift:
field ``replan_interval`` is ``--replan-interval`` and ``CARBON_DEFERRAL_REPLAN_INTERVAL``. A flag wins
over the environment, which wins over the default. Booleans take ``--no-<flag>`` too.
"""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Mapping, Sequence

from kubernetes_asyncio.config import ConfigException

from carbon_common.jsonlog import setup_logging
from carbon_common.kube import KubeConfigError
from carbon_common.serving import run_app
from carbon_common.settings import parse_or_exit
from carbon_common.tls import CertReloader, server_ssl_context
from deferral.app import create_app
from deferral.settings import ENV_PREFIX, DeferralSettings, validate

PROG = "carbon-deferral"
DESCRIPTION = (
    "Carbon-aware deferral: a webhook that holds deferrable pods and a controller that releases them "
    "in the greenest window before their deadline. Every flag can also be set with the environment "
    "variable shown."
)
log = logging.getLogger("deferral")


def parse_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> DeferralSettings:
    """Settings from flags, then CARBON_DEFERRAL_* variables, then defaults; SystemExit(2) on bad input."""
    return parse_or_exit(
        DeferralSettings, ENV_PREFIX, argv, env, prog=PROG, description=DESCRIPTION, validate=validate
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    setup_logging(settings.log_level)
    context = None
    reloader = None
    serving = settings.serving
    if serving.tls_cert is not None and serving.tls_key is not None:
        try:
            context = server_ssl_context(serving.tls_cert, serving.tls_key)
        except (OSError, ssl.SSLError) as error:
            log.error("cannot load the TLS certificate", extra={"error": str(error)})
            return 2
        # cert-manager rotates webhook certificates in place: reload them without a restart.
        reloader = CertReloader(context, serving.tls_cert, serving.tls_key)
    elif settings.webhook:
        log.warning("serving plain HTTP: the API server only calls webhooks over HTTPS (set --tls-cert)")
    try:
        # carbon_common.serving: read timeouts, a connection cap and a 5 s shutdown.
        run_app(
            create_app(settings, reloader=reloader),
            host=serving.host,
            port=serving.port,
            ssl_context=context,
        )
    except (KubeConfigError, ConfigException, OSError) as error:
        # No usable kubeconfig, or the port is taken: a start-up error to state plainly, not a traceback.
        log.error("cannot start", extra={"error": f"{type(error).__name__}: {error}"})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
