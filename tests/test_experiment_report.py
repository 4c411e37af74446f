"""The experiment report (report.html + report.md + PNGs) from synthetic run directories.

The run directories come from `test_comparison.write_run_dir`: a reference (equal-weight), a
planted winner and a zero-edge noise method.
"""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import pytest

from test_comparison import write_run_dir
from trustfolio.errors import UserError
from trustfolio.evaluation import experiment_report
from trustfolio.evaluation.comparison import Comparison
from trustfolio.evaluation.experiment_report import build_report, write_comparison_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One test window, one cost multiple: the report has no per-period or cost-stress section."""
    run_dir = write_run_dir(tmp_path_factory.mktemp("single"))
    build_report(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def online(tmp_path_factory) -> Path:
    """Three windows, cost multiples ×1 and ×3, and a method whose jobs all failed."""
    run_dir = write_run_dir(
        tmp_path_factory.mktemp("online"), n_windows=3, multiples=(1.0, 3.0), failing=("momentum",)
    )
    build_report(run_dir)
    return run_dir


def embedded_pngs(html_text: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)
    ]


def test_report_files_hold_methods_bold_best_and_embedded_images(single):
    html_text = (single / "report.html").read_text()
    markdown = (single / "report.md").read_text()
    for name in ("report.html", "report.md", "cumulative_return.png", "drawdown.png"):
        assert (single / name).is_file()
    assert not (single / "per_period.png").exists()
    for method in ("equal-weight", "winner", "noise"):
        assert method in html_text and method in markdown

    # best CR and SR (the planted winner) in bold; the noise method's values not
    summary = Comparison.from_run_dir(single).summary()
    winner_cr = f"{summary.loc['winner', 'CR_mean']:+.3f} ± {summary.loc['winner', 'CR_std']:.3f}"
    winner_sr = f"{summary.loc['winner', 'SR_mean']:.2f} ± {summary.loc['winner', 'SR_std']:.2f}"
    noise_cr = f"{summary.loc['noise', 'CR_mean']:+.3f} ± {summary.loc['noise', 'CR_std']:.3f}"
    assert f"<td><b>{winner_cr}</b></td>" in html_text and f"**{winner_cr}**" in markdown
    assert f"<td><b>{winner_sr}</b></td>" in html_text and f"**{winner_sr}**" in markdown
    assert f"<td>{noise_cr}</td>" in html_text and f"| {noise_cr} |" in markdown

    # self-contained: both plots embedded (the very PNG files saved beside it), nothing fetched
    pictures = embedded_pngs(html_text)
    assert pictures == [
        (single / "cumulative_return.png").read_bytes(),
        (single / "drawdown.png").read_bytes(),
    ]
    assert all(p.startswith(PNG_MAGIC) for p in pictures)
    assert not re.search(r'(src|href)="(https?:|//)', html_text)
    assert "](cumulative_return.png)" in markdown and "](drawdown.png)" in markdown

    # significance, data-snooping tests, config and facts
    assert "Reality Check p = " in markdown and "SPA p = " in markdown
    assert "Deflated Sharpe ratio of winner" in markdown
    assert "```yaml\nname: planted" in markdown and "name: planted" in html_text
    assert "| **jobs** | 7 finished, 0 failed |" in markdown
    for heading in ("Per test period", "Cost stress", "Failed jobs"):
        assert heading not in markdown and heading not in html_text


def test_significance_rows_flag_the_winner_only(single):
    section = (single / "report.md").read_text().split("## Significance")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0][2:]: line for line in section.splitlines() if line.startswith("| ")}
    assert set(rows) == {"method", "winner", "noise"}
    assert rows["winner"].count("**<0.001**") == 4  # NW p, bootstrap p and both q-values
    assert "**" not in rows["noise"]


def test_several_windows_and_costs_add_per_period_and_cost_stress(online):
    html_text = (online / "report.html").read_text()
    markdown = (online / "report.md").read_text()
    assert (online / "per_period.png").read_bytes().startswith(PNG_MAGIC)
    assert len(embedded_pngs(html_text)) == 3
    for text in (html_text, markdown):
        assert "Per test period" in text and "Cost stress" in text
        assert "CR ×3" in text and "online-2" in text
    assert "momentum (missing)" in markdown and "planted failure" in markdown
    assert "Failed jobs (18)" in markdown


def test_markdown_tables_are_well_formed(single, online):
    for run_dir in (single, online):
        lines = (run_dir / "report.md").read_text().splitlines()
        tables = 0
        for i, line in enumerate(lines):
            if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
                tables += 1
                block = [row for row in _block(lines, i)]
                width = _cells(block[0])
                assert re.fullmatch(r"\|(---\|)+", block[1]) and block[1].count("|") - 1 == width
                assert all(_cells(row) == width for row in block), block
                assert lines[i - 1] == "" and (i + len(block) == len(lines) or lines[i + len(block)] == "")
        assert tables >= (3 if run_dir == single else 6)


def _block(lines: list[str], start: int) -> list[str]:
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def _cells(row: str) -> int:
    """Cells of a Markdown table row (escaped pipes are part of a cell)."""
    assert row.startswith("|") and row.endswith("|"), row
    return len(re.split(r"(?<!\\)\|", row)) - 2


def test_a_crash_leaves_no_half_report(tmp_path, monkeypatch):
    run_dir = write_run_dir(tmp_path / "run", n_windows=2)
    comparison = Comparison.from_run_dir(run_dir)

    def broken_plot(_comparison):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(experiment_report, "plot_per_period", broken_plot)
    out_dir = tmp_path / "report"
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_comparison_report(comparison, out_dir, title="t")
    assert not out_dir.exists() or not any(out_dir.iterdir())

    monkeypatch.undo()
    path = write_comparison_report(comparison, out_dir, title="custom title", facts=[("data", "made up")])
    assert path == out_dir / "report.html"
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "cumulative_return.png",
        "drawdown.png",
        "per_period.png",
        "report.html",
        "report.md",
    ]  # and no temporary file left behind
    assert "| **data** | made up |" in (out_dir / "report.md").read_text()
    assert "<h1>custom title</h1>" in path.read_text()


def test_build_report_needs_finished_jobs(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_report(tmp_path / "nowhere")
    run_dir = write_run_dir(tmp_path / "failed", methods=(), failing=("winner",))
    with pytest.raises(UserError, match="no finished job"):
        build_report(run_dir)
    assert not (run_dir / "report.html").exists()


def test_report_of_a_real_runner_run(tmp_path, monkeypatch):
    """End to end with `trustfolio.runner`: walk-forward windows, a failing method, two cost multiples."""
    fixtures = Path(__file__).resolve().parent / "fixtures"
    monkeypatch.syspath_prepend(str(fixtures))
    import runner_helpers  # registers the test-broken method

    from trustfolio.runner import Experiment, run_experiment

    table = runner_helpers.write_synthetic_table(tmp_path / "prices.csv", days=160)
    experiment = Experiment.from_dict(
        {
            "name": "end-to-end",
            "dataset": f"table:{table}",
            "protocol": {"kind": "walk-forward", "train": 40, "test": 30, "step": 30},
            "methods": ["equal-weight", {"name": "momentum", "config": {"lookback": 20}}, "test-broken"],
            "seeds": [0, 1],
            "cost_multiples": [1, 3],
            "imports": ["runner_helpers"],
        }
    )
    run_experiment(experiment, tmp_path / "run", workers=1, progress=False)
    path = build_report(tmp_path / "run")

    comparison = Comparison.from_run_dir(tmp_path / "run")
    assert comparison.windows == ["wf-001", "wf-002", "wf-003", "wf-004"]
    assert "boom on purpose" in comparison.missing["test-broken"]
    chained = comparison.chains()["momentum"][0]
    windows = [j.result for j in comparison.jobs if j.method == "momentum" and j.cost_multiple == 1.0]
    assert chained.CR == pytest.approx(
        math.prod(r.values[-1] / r.values[0] for r in windows) - 1.0, rel=1e-12
    )
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert path.is_file() and "Per test period" in markdown and "Cost stress" in markdown
    assert "test-broken (missing)" in markdown and "Reality Check p = " in markdown


def test_facts_and_significance_count_days_and_returns_the_same_way(single, online):
    for run_dir in (single, online):
        markdown = (run_dir / "report.md").read_text()
        facts = markdown[markdown.index("## Facts") : markdown.index("## Metrics")]
        significance = markdown[markdown.index("## Significance") : markdown.index("## Curves")]
        days = int(re.search(r"(\d+) trading days", facts).group(1))
        returns_in_facts = int(re.search(r"(\d+) daily returns", facts).group(1))
        returns_in_significance = int(re.search(r"(\d+) daily returns", significance).group(1))
        assert returns_in_facts == returns_in_significance == days - 1
        assert not re.search(r"\d+ days\b", significance)  # "days" alone would be ambiguous


def test_protocol_fact_reads_as_a_sentence(single, online):
    single_facts = (single / "report.md").read_text()
    assert "window(s)" not in single_facts and "(offline)" not in single_facts
    assert "| offline: 1 test window |" in single_facts
    assert "| online: 3 test windows (online-1, online-2, online-3) |" in (online / "report.md").read_text()


def test_significance_labels_the_reality_check_and_the_studentized_spa(single):
    markdown = (single / "report.md").read_text()
    significance = markdown[markdown.index("## Significance") : markdown.index("## Curves")]
    assert "White Reality Check (arch, not studentized)" in significance
    assert re.search(r"Hansen SPA \(studentized\): SPA p = [<0-9.]+ \(consistent; lower [0-9.]+, upper [0-9.]+[;)]", significance)
    hansen = Comparison.from_run_dir(single).significance().attrs["hansen_spa"]
    assert f"lower {hansen.lower:.3f}, upper {hansen.upper:.3f}" in significance
