"""The report: every results JSON becomes tables; only the README's marked block is rewritten."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.report import BEGIN, END, replace_block, write_report

README = (
    f"# Project\n\nIntro stays.\n\n## Evaluation\n\n{BEGIN}\nold block\n{END}\n\n## Later\n\nAlso stays.\n"
)


def _results(tmp_path: Path) -> Path:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "carbon_eval.json").write_bytes(
        orjson.dumps(
            {
                "benchmark": "carbon_eval",
                "quick": True,
                "machine": {"nproc": 2, "cpu": "Test CPU", "memory_gib": 4.0, "python": "3.11"},
                "targets": [
                    {"name": "spatial", "target": ">= 95%", "value": 0.97, "met": True, "detail": "d"}
                ],
                "tables": [
                    {"title": "Policies", "columns": ["policy", "reduction"], "rows": [["ours", "40.0%"]]},
                    {"title": "Temporal", "columns": ["forecast"], "rows": [["baseline"]]},
                    {"title": "Per zone", "columns": ["zone"], "rows": [["DE"]]},
                    {"title": "Sweep", "columns": ["slack"], "rows": [["24"]]},
                ],
                "plots": ["carbon_policies.png"],
            }
        )
    )
    (results / "carbon_policies.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (results / "scheduler_throughput.json").write_bytes(
        orjson.dumps(
            {
                "pods": 100,
                "nodes": 50,
                "ratio": 0.91,
                "floor_ratio": 0.95,
                "target_ratio": 0.85,
                "meets_target": True,
            }
        )
    )
    (results / "custom.json").write_bytes(orjson.dumps({"speed": 1.5, "rows": [{"a": 1, "b": "x|y"}]}))
    (results / "broken.json").write_text("{not json")
    return results


def test_summary_has_every_benchmark_and_readme_block_is_the_only_change(tmp_path: Path) -> None:
    results = _results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    summary, updated = write_report(results, readme)
    assert updated
    text = summary.read_text()
    assert "| ours | 40.0% |" in text
    assert "| spatial | >= 95% | 97.0% (d) | yes |" in text
    assert "| 100 | 50 | 0.91 | 0.95 | >= 0.85 | yes |" in text  # the throughput adapter
    assert "| 1 | x\\|y |" in text  # generic rendering escapes pipes
    assert "broken.json: unreadable" in text
    assert "![carbon_policies](carbon_policies.png)" in text
    new = readme.read_text()
    before, _, rest = new.partition(BEGIN)
    block, _, after = rest.partition(END)
    assert before == README.partition(BEGIN)[0]
    assert after == README.partition(END)[2]
    assert "old block" not in block
    assert "![carbon_policies](bench/results/carbon_policies.png)" in block
    assert "Per zone" not in block
    assert "Per zone" in text
    assert "quick (smoke) sizes" in block


def test_missing_markers_leave_the_readme_untouched(tmp_path: Path) -> None:
    results = _results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\nNo markers here.\n")
    summary, updated = write_report(results, readme)
    assert not updated
    assert readme.read_text() == "# Project\n\nNo markers here.\n"
    assert summary.is_file()


def test_replace_block_refuses_markers_out_of_order() -> None:
    assert replace_block(f"{END}\n{BEGIN}\n", "x") is None
    assert replace_block(f"a{BEGIN}old{END}b", "new") == f"a{BEGIN}\nnew\n{END}b"


def test_empty_results_directory_still_writes_a_summary(tmp_path: Path) -> None:
    summary, updated = write_report(tmp_path / "none", None)
    assert not updated
    assert "No benchmark results yet" in summary.read_text()


def test_latency_rows_become_a_latency_vs_nodes_plot(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    rows = [
        {"verb": v, "mode": "NodeNames", "nodes": n, "handler_p50_ms": n / 1000, "handler_p99_ms": 1.0}
        for v in ("filter", "prioritize")
        for n in (100, 1000)
    ]
    (results / "extender_latency.json").write_bytes(orjson.dumps({"rows": rows}))
    summary, _ = write_report(results, None)
    assert (results / "report_latency_vs_nodes.png").read_bytes()[:4] == b"\x89PNG"
    assert "![report_latency_vs_nodes](report_latency_vs_nodes.png)" in summary.read_text()
