"""`carbon-feed [--config feed.yaml]` (also `python -m carbon_feed`).

With no config at all the feed replays the ENTSO-E trace it ships as package data: no keys, no network.
Precedence: defaults < YAML < CARBON_FEED_* environment < flags. SIGTERM and SIGINT stop it cleanly
(refresh loops cancelled, store closed; the last snapshot file stays in place for the extender).
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Sequence

from carbon_common.jsonlog import setup_logging
from carbon_common.serving import run_app
from carbon_common.settings import ConfigError, flag_values, options, parser_for, report
from carbon_feed.api import create_app
from carbon_feed.config import ENV_PREFIX, FeedSettings, load_settings
from carbon_feed.service import FeedService

log = logging.getLogger("carbon_feed")

PROG = "carbon-feed"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = parser_for(
        FeedSettings,
        ENV_PREFIX,
        PROG,
        "Carbon-intensity feed for the carbon-aware scheduler extender. Precedence: defaults < the YAML "
        "config < the environment variable shown < the flag.",
    )
    parser.add_argument("--config", help=f"YAML config file [env {ENV_PREFIX}CONFIG] (default: None)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(args.config, flag_values(args, options(FeedSettings, ENV_PREFIX)))
    except ConfigError as exc:
        return report(PROG, exc)
    setup_logging(settings.log_level)
    log.info(
        "starting",
        extra={
            "host": settings.host,
            "port": settings.port,
            "db": settings.db,
            "snapshot_file": settings.snapshot_file,
            "providers": [f"{p.kind}:{p.name}" for p in settings.providers],
        },
    )
    app = create_app(FeedService(settings))
    try:
        run_app(app, host=settings.host, port=settings.port)  # read timeouts, connection cap, 5 s shutdown
    except ConfigError as exc:
        # Found at start (an unusable --db, a provider's missing file or unknown zone): the same
        # one line as a bad config file, naming the key, and the same exit code.
        code = report(PROG, exc)
        log.error("cannot start", extra={"error": str(exc)})
        return code
    except (ValueError, OSError, sqlite3.Error) as exc:
        # Provider options (a missing secret file, a bad base_url), an unusable --db or a port in use:
        # one clear line instead of a traceback. Provider errors never carry secret values.
        log.error("cannot start", extra={"error": f"{type(exc).__name__}: {exc}"})
        return 2
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
