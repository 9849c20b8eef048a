"""CLI: ``carbon-rebalancer`` / ``python -m rebalancer``.

Flags and environment variables are generated from `RebalancerSettings`, so the three never drift:
field ``margin_abs`` is ``--margin-abs`` and ``CARBON_REBALANCER_MARGIN_ABS``. A flag wins over the
environment, which wins over the default. Booleans take ``--no-<flag>`` too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence

from kubernetes_asyncio.config import ConfigException

from carbon_common.jsonlog import setup_logging
from carbon_common.kube import KubeConfigError
from carbon_common.serving import run_app
from carbon_common.settings import parse_or_exit
from rebalancer.app import create_app
from rebalancer.settings import ENV_PREFIX, RebalancerSettings, validate

PROG = "carbon-rebalancer"
DESCRIPTION = (
    "Carbon-aware rebalancer: evicts opted-in pods (through the Eviction API, which honours "
    "PodDisruptionBudgets) when another zone has been greener by a margin for a while, so that their "
    "controllers recreate them and the scheduler places them again. Dry-run by default. Every flag can "
    "also be set with the environment variable shown."
)
log = logging.getLogger("rebalancer")


def parse_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> RebalancerSettings:
    """Settings from flags, then CARBON_REBALANCER_* variables, then defaults; SystemExit(2) on bad input."""
    return parse_or_exit(
        RebalancerSettings, ENV_PREFIX, argv, env, prog=PROG, description=DESCRIPTION, validate=validate
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    setup_logging(settings.log_level)
    try:
        # carbon_common.serving: read timeouts, a connection cap and a 5 s shutdown.
        run_app(create_app(settings), host=settings.serving.host, port=settings.serving.port)
    except (KubeConfigError, ConfigException, OSError) as error:
        # No usable kubeconfig, or the port is taken: a start-up error to state plainly, not a traceback.
        log.error("cannot start", extra={"error": f"{type(error).__name__}: {error}"})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
