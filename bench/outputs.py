"""Where a benchmark writes: one `--out DIR` for every step, under .cache/ unless told otherwise.

Committed results (bench/results/) change only through `python -m bench` (`make bench`), which passes
`--out bench/results` to each step; a benchmark run by hand never overwrites them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def default_out(name: str) -> Path:
    return ROOT / ".cache" / name


def add_out_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out DIR``: the step writes ``DIR/<name>.json`` (and its plots) there."""
    parser.add_argument(
        "--out",
        type=Path,
        default=default_out(name),
        help=f"results directory; writes {name}.json there (default: .cache/{name}/)",
    )
