"""Collect every benchmark's JSON under bench/results into tables and plots.

    python -m bench.report [--results bench/results] [--readme README.md]

Writes ``summary.md`` next to the results and replaces the text between ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` in the README (nothing else in it; without both markers only summary.md is
written). A benchmark JSON may carry its own presentation, which is used as is:

- ``"tables": [{"title": str, "columns": [str], "rows": [[str]]}]``
- ``"targets": [{"name", "target", "value", "met", "detail"}]``
- ``"plots": ["file.png"]`` (relative to the results directory)
- ``"machine": {"nproc", "cpu", "memory_gib", ...}``

Files without them are rendered by a small adapter for the known benchmarks, else generically (scalar
fields as key/value rows, a list of flat objects as one table). A broken file is reported in the
summary and never stops the report.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.evaluation.machine import describe, machine_info

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
ORDER = (
    "carbon_eval",
    "deferral_eval",
    "forecast_mape",
    "extender_latency",
    "extender_load",
    "scheduler_throughput",
)
TITLES = {
    "carbon_eval": "Carbon saved on real grid data",
    "deferral_eval": "Deferral planner on real traces",
    "forecast_mape": "Forecast error of the feed's baseline",
    "extender_latency": "Extender latency per request",
    "extender_load": "Extender under load, and its memory",
    "scheduler_throughput": "kube-scheduler throughput with and without the extender",
}
README_TABLES = {
    "carbon_eval": (0, 1, 3),
    "extender_load": (0, 1),
}
"""Which tables of a benchmark go into the README (all go into summary.md)."""

Table = dict[str, Any]


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value != 0 and abs(value) < 0.01:
            return f"{value:.2g}"
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flat_scalars(doc: Mapping[str, Any], skip: Sequence[str] = ()) -> list[list[str]]:
    return [
        [key, fmt(value)]
        for key, value in doc.items()
        if key not in skip and (value is None or isinstance(value, str | int | float | bool))
    ]


def _list_table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Table:
    cols = list(columns) if columns else [k for k, v in rows[0].items() if not isinstance(v, dict | list)]
    return {"title": title, "columns": cols, "rows": [[fmt(r.get(c)) for c in cols] for r in rows]}


def _generic(doc: Mapping[str, Any]) -> list[Table]:
    tables: list[Table] = []
    scalars = _flat_scalars(doc, skip=("benchmark", "schema", "generatedAt", "generated_at"))
    if scalars:
        tables.append({"title": "Summary", "columns": ["field", "value"], "rows": scalars})
    for key, value in doc.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append(_list_table(key, value))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            first = next(iter(value.values()))
            cols = [k for k, v in first.items() if not isinstance(v, dict | list)]
            rows = [[fmt(name), *(fmt(v.get(c)) for c in cols)] for name, v in value.items()]
            tables.append({"title": key, "columns": [key, *cols], "rows": rows})
    return tables


def _extender_latency(doc: Mapping[str, Any]) -> list[Table]:
    cols = [
        "verb",
        "mode",
        "nodes",
        "handler_p50_ms",
        "handler_p99_ms",
        "http_p50_ms",
        "http_p99_ms",
        "floor_p50_ms",
    ]
    tables = [
        _list_table(
            "Latency per request (ms): handler in-process, HTTP on loopback, JSON floor", doc["rows"], cols
        )
    ]
    met = doc.get("targets_met")
    if isinstance(met, dict):
        tables.append(
            {"title": "Targets", "columns": ["target", "met"], "rows": [[k, fmt(v)] for k, v in met.items()]}
        )
    return tables


def _scheduler_throughput(doc: Mapping[str, Any]) -> list[Table]:
    rows = []
    for arm in ("baseline", "extender", "floor"):
        for run in doc.get(arm) or []:
            rows.append({"arm": arm, **{k: v for k, v in run.items() if not isinstance(v, dict | list)}})
    tables = [
        {
            "title": "Summary",
            "columns": [
                "pods",
                "nodes",
                "ratio (extender / baseline pods/s)",
                "floor (null extender / baseline)",
                "target",
                "met",
            ],
            "rows": [
                [
                    fmt(doc.get("pods")),
                    fmt(doc.get("nodes")),
                    fmt(doc.get("ratio")),
                    fmt(doc.get("floor_ratio")),
                    f">= {fmt(doc.get('target_ratio'))}",
                    fmt(doc.get("meets_target")),
                ]
            ],
        }
    ]
    if rows:
        tables.append(_list_table("Runs", rows))
    return tables


def _forecast_mape(doc: Mapping[str, Any]) -> list[Table]:
    zones = doc.get("zones", {})
    cols = ["baseline", "persistence", "same_hour_yesterday"]
    rows = [[z, *(fmt(v.get(c)) for c in cols)] for z, v in zones.items()]
    mean = doc.get("mean")
    if isinstance(mean, dict):
        rows.append(["**mean**", *(fmt(mean.get(c)) for c in cols)])
    return [
        {
            "title": f"Day-ahead MAPE (%), leads 1-{doc.get('horizonHours', 24)} h",
            "columns": ["zone", *cols],
            "rows": rows,
        }
    ]


def _deferral_eval(doc: Mapping[str, Any]) -> list[Table]:
    tables = [{"title": "Summary", "columns": ["field", "value"], "rows": _flat_scalars(doc)}]
    if doc.get("zones"):
        tables.append(_list_table("Per zone", doc["zones"]))
    return tables


ADAPTERS: dict[str, Callable[[Mapping[str, Any]], list[Table]]] = {
    "extender_latency": _extender_latency,
    "scheduler_throughput": _scheduler_throughput,
    "forecast_mape": _forecast_mape,
    "deferral_eval": _deferral_eval,
}


def md_table(table: Table, level: str = "####") -> str:
    cols = table["columns"]
    lines = [f"{level} {table['title']}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"


def md_targets(targets: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| target | required | measured | met |", "|---|---|---|---|"]
    for t in targets:
        value = t.get("value")
        shown = f"{value:.1%}" if isinstance(value, float) else fmt(value)
        detail = f" ({t['detail']})" if t.get("detail") else ""
        lines.append(
            f"| {t['name']} | {t['target']} | {shown}{detail} | {'yes' if t.get('met') else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def load_results(results: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    docs: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for path in sorted(results.glob("*.json")):
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            problems.append(f"{path.name}: unreadable ({exc})")
            continue
        if not isinstance(doc, dict):
            problems.append(f"{path.name}: not a JSON object")
            continue
        docs[path.stem] = doc
    return docs, problems


def _name_order(names: Sequence[str]) -> list[str]:
    known = [n for n in ORDER if n in names]
    return known + sorted(n for n in names if n not in ORDER)


def render(name: str, doc: Mapping[str, Any], image_prefix: str, readme: bool) -> str:
    title = TITLES.get(name, name.replace("_", " "))
    parts = [f"### {title}\n"]
    when = doc.get("generatedAt") or doc.get("generated_at") or doc.get("measured_at")
    meta = [f"`{name}.json`"]
    if when:
        meta.append(f"run {when}")
    if doc.get("quick"):
        meta.append("**quick (smoke) sizes**")
    machine = doc.get("machine")
    if isinstance(machine, dict):
        meta.append(describe(machine))
    parts.append(" · ".join(meta) + "\n")
    if doc.get("targets"):
        parts.append(md_targets(doc["targets"]))
    try:
        tables = doc.get("tables") or ADAPTERS.get(name, _generic)(doc)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        tables = _generic(doc)
        parts.append(f"_(rendered generically: {type(exc).__name__}: {exc})_\n")
    chosen = README_TABLES.get(name)
    for i, table in enumerate(tables):
        if readme and chosen is not None and i not in chosen:
            continue
        parts.append(md_table(table))
    for png in doc.get("plots", []):
        parts.append(f"![{Path(png).stem}]({image_prefix}{png})\n")
    return "\n".join(parts)


LATENCY_PNG = "report_latency_vs_nodes.png"


def latency_plot(results: Path, doc: Mapping[str, Any]) -> str | None:
    """Handler p50 vs nodes per request from extender_latency's rows; None when it has no such rows."""
    series: dict[str, list[tuple[int, float]]] = {}
    for row in doc.get("rows", []):
        try:
            key = f"{row['verb']} ({row['mode']}) handler p50"
            series.setdefault(key, []).append((int(row["nodes"]), float(row["handler_p50_ms"])))
        except (KeyError, TypeError, ValueError):
            return None
    if not series:
        return None
    from bench.evaluation.plots import latency_vs_nodes

    title = "Extender handler latency vs nodes per request (in-process)"
    return latency_vs_nodes(
        series, results / LATENCY_PNG, title, "p50 latency (ms), log scale", log_y=True
    ).name


def build(results: Path, image_prefix: str, readme: bool) -> str:
    docs, problems = load_results(results)
    latency = docs.get("extender_latency")
    if latency is not None and "plots" not in latency:
        png = latency_plot(results, latency)
        if png is not None:
            latency["plots"] = [png]
    out = [f"_Generated by `python -m bench.report` on {describe(machine_info())}._\n"]
    if not docs:
        out.append("No benchmark results yet: run `make bench`.\n")
    for name in _name_order(list(docs)):
        out.append(render(name, docs[name], image_prefix, readme))
    extra = sorted(
        p.name for p in results.glob("*.png") if not any(p.name in d.get("plots", []) for d in docs.values())
    )
    for png in extra:
        out.append(f"![{Path(png).stem}]({image_prefix}{png})\n")
    if problems:
        out.append("Results that could not be read: " + "; ".join(problems) + "\n")
    return "\n".join(out)


def replace_block(text: str, block: str) -> str | None:
    """`text` with the marked block replaced, or None if the markers are missing or out of order."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0 or end < start:
        return None
    return text[: start + len(BEGIN)] + "\n" + block.rstrip("\n") + "\n" + text[end:]


def write_report(results: Path, readme: Path | None) -> tuple[Path, bool]:
    """Write summary.md; update the README block if its markers exist. Returns (summary, readme updated)."""
    results.mkdir(parents=True, exist_ok=True)
    summary = results / "summary.md"
    summary.write_text("# Benchmark results\n\n" + build(results, "", readme=False))
    if readme is None or not readme.is_file():
        return summary, False
    prefix = results.resolve().relative_to(readme.resolve().parent).as_posix() + "/"
    block = build(results, prefix, readme=True) + f"\nAll tables: [{prefix}summary.md]({prefix}summary.md).\n"
    # Headings inside the README block sit under the lead's "## Evaluation".
    block = re.sub(r"^#### ", "##### ", block, flags=re.MULTILINE)
    updated = replace_block(readme.read_text(), block)
    if updated is None:
        return summary, False
    tmp = readme.with_name(readme.name + ".bench.tmp")
    tmp.write_text(updated)
    tmp.replace(readme)
    return summary, True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--no-readme", action="store_true", help="only write summary.md")
    args = parser.parse_args(argv)
    summary, updated = write_report(args.results, None if args.no_readme else args.readme)
    print(
        f"wrote {summary}"
        + (f" and the bench block of {args.readme}" if updated else " (README not updated)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
