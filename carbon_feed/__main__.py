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
from carbon_feed.api import create_app
from carbon_feed.config import ConfigError, FeedSettings, load_settings, scalar_fields
from carbon_feed.service import FeedService

log = logging.getLogger("carbon_feed")

_HELP = {
    "host": "listen address (default 127.0.0.1)",
    "port": "listen port (default 8080)",
    "snapshot_file": "write the snapshot JSON for the extender here after each refresh",
    "db": "SQLite history path",
    "log_level": "debug, info, warning or error",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="carbon-feed", description="Carbon-intensity feed for the carbon-aware scheduler extender."
    )
    parser.add_argument("--config", help="YAML config file (env CARBON_FEED_CONFIG)")
    for name in scalar_fields():
        default = getattr(FeedSettings(), name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=_HELP.get(name, f"default {default}") + f"; env CARBON_FEED_{name.upper()}",
        )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {name: getattr(args, name) for name in scalar_fields()}
    try:
        settings = load_settings(args.config, overrides)
    except ConfigError as exc:
        print(f"carbon-feed: configuration error: {exc}", file=sys.stderr)
        return 2
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
        print(f"carbon-feed: configuration error: {exc}", file=sys.stderr)
        log.error("cannot start", extra={"error": str(exc)})
        return 2
    except (ValueError, OSError, sqlite3.Error) as exc:
        # Provider options (a missing secret file, a bad base_url), an unusable --db or a port in use:
        # one clear line instead of a traceback. Provider errors never carry secret values.
        log.error("cannot start", extra={"error": f"{type(exc).__name__}: {exc}"})
        return 2
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
