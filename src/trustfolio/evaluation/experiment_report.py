"""The report of an experiment: a `Comparison` as `report.html` (self-contained) and `report.md`.

`write_comparison_report(comparison, out_dir, title=..., facts=...)` writes, into `out_dir`:

- ``report.html`` — opens offline: the plots are embedded as base64 PNG;
- ``report.md``   — the same tables in Markdown, with links to the PNG files beside it;
- ``cumulative_return.png``, ``drawdown.png`` and, with several test windows, ``per_period.png``.

Sections: the run's facts, the metrics table (mean ± std across seeds of each seed's own metrics,
best of each column in bold), significance against the reference seed by seed (per-seed p-values,
their median, the Holm-combined p across a method's seeds, Benjamini-Hochberg q-values across
methods; `evaluation.significance`) plus White's Reality Check (arch, not studentized), Hansen's
studentized SPA test (`snooping.hansen_spa`) and the deflated Sharpe ratio with every seed of every
method as a candidate and trial (``method#seed``), cumulative-return and drawdown curves (the mean of
a method's seed curves, labelled as an ensemble, and the min–max band of its seeds), per-period
table and bars (several windows only), cost-stress table (several cost multiples only), failed
jobs, and the experiment's YAML. Nothing computed on a mean across seeds is shown unlabelled: such a
series is an ensemble of the seeds, not an agent anyone would deploy. Every file is written to a temporary name and
renamed, and all content is built before the first write, so a crash leaves no half report.

`build_report(run_dir)` is what ``trustfolio report RUN_DIR`` calls.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trustfolio.errors import TrustfolioError, UserError
from trustfolio.evaluation.comparison import Comparison
from trustfolio.evaluation.report import (  # also selects Agg
    TABLE_COLUMNS,
    figure_png,
    format_metric,
    html_head,
)
from trustfolio.evaluation.significance import SIGNIFICANCE_LEVEL, ensemble_label, p_text
from trustfolio.files import write_atomic

# A table cell: its text and whether it is bold. A table: headers and rows of cells.
Cell = tuple[str, bool]
Table = tuple[list[str], list[list[Cell]]]

SIGNIFICANCE_COLUMNS = {  # column of Comparison.significance -> header
    "n_seeds": "seeds",
    "mean_excess": "mean excess (ann., mean of seeds)",
    "nw_p_seeds": "NW p per seed",
    "nw_p_median": "NW p median",
    "nw_p_holm": "NW Holm p",
    "nw_significant": "NW Holm 5 %",
    "boot_p_seeds": "bootstrap p per seed",
    "boot_p_median": "bootstrap p median",
    "boot_p_holm": "bootstrap Holm p",
    "boot_significant": "bootstrap Holm 5 %",
    "q_nw": "NW q",
    "q_boot": "bootstrap q",
}
MAX_FAILURES_SHOWN = 30


# ---------------------------------------------------------------------- tables
def _mean_std(column: str, mean: float, std: float) -> str:
    """``mean ± std`` in the column's format; the mean alone when there is no spread (one seed)."""
    text = format_metric(column, mean)
    if pd.isna(mean) or pd.isna(std):
        return text
    return f"{text} ± {format_metric(column, abs(std)).lstrip('+')}"


def _best(values: pd.Series, direction: str | None):
    """Index label of the best value (None without a direction or without values)."""
    if direction is None or values.notna().sum() == 0:
        return None
    return values.idxmax() if direction == "max" else values.idxmin()


def metrics_mean_std_table(summary: pd.DataFrame, missing: Sequence[str] = ()) -> Table:
    """`Comparison.summary` as cells: ``mean ± std`` per metric (best mean in bold), then ``n``."""
    columns = [c for c in TABLE_COLUMNS if f"{c}_mean" in summary.columns]
    best = {c: _best(summary[f"{c}_mean"], TABLE_COLUMNS[c][2]) for c in columns}
    rows = []
    for method, row in summary.iterrows():
        name = f"{method} (missing)" if method in missing else str(method)
        cells = [(name, False)]
        for c in columns:
            cells.append((_mean_std(c, row[f"{c}_mean"], row[f"{c}_std"]), best[c] == method))
        cells.append((str(int(row["n"])), False))
        rows.append(cells)
    return ["method", *(TABLE_COLUMNS[c][0] for c in columns), "n"], rows


def significance_cells(table: pd.DataFrame) -> Table:
    """`Comparison.significance` as cells; Holm-combined p- and q-values below `SIGNIFICANCE_LEVEL`
    in bold (a per-seed p or a median is not a test of the method, so it is never bold)."""
    columns = [c for c in SIGNIFICANCE_COLUMNS if c in table.columns]
    rows = []
    for method, row in table.iterrows():
        cells = [(str(method), False)]
        for c in columns:
            value = row[c]
            if c == "n_seeds":
                text = "1 (one series)" if value == 1 else str(int(value))
            elif c.endswith("_seeds"):
                text = ", ".join(p_text(p) for p in value)
            elif c.endswith("_significant"):
                text = f"{int(value)} of {int(row['n_seeds'])}"
            elif c == "mean_excess":
                text = "–" if pd.isna(value) else f"{value:+.2%}"
            else:
                text = p_text(value)
            decisive = c.endswith("_holm") or c.startswith("q_")
            cells.append((text, decisive and pd.notna(value) and value < SIGNIFICANCE_LEVEL))
        rows.append(cells)
    return ["method", *(SIGNIFICANCE_COLUMNS[c] for c in columns)], rows


def per_period_cells(per_period: pd.DataFrame, windows: Sequence[str], methods: Sequence[str]) -> Table:
    """One row per window (date order), one column per method: CR mean ± std, best in bold."""
    rows = []
    for window in windows:
        means = pd.Series({m: per_period.loc[(m, window), "CR_mean"] for m in methods})
        best = _best(means, "max")
        cells = [(window, False)]
        for method in methods:
            mean, std = per_period.loc[(method, window), ["CR_mean", "CR_std"]]
            cells.append((_mean_std("CR", mean, std), best == method))
        rows.append(cells)
    return ["window (CR)", *methods], rows


def cost_stress_cells(cost_stress: pd.DataFrame, methods: Sequence[str], multiples: Sequence[float]) -> Table:
    """One row per method, CR and SR (mean ± std) per cost multiple, best of each column in bold."""
    headers, columns = ["method"], []
    for multiple in multiples:
        for metric in ("CR", "SR"):
            headers.append(f"{metric} ×{multiple:g}")
            means = cost_stress.xs(multiple, level="cost_multiple")[f"{metric}_mean"]
            columns.append((metric, multiple, _best(means, TABLE_COLUMNS[metric][2])))
    rows = []
    for method in methods:
        cells = [(method, False)]
        for metric, multiple, best in columns:
            mean, std = cost_stress.loc[(method, multiple), [f"{metric}_mean", f"{metric}_std"]]
            cells.append((_mean_std(metric, mean, std), best == method))
        rows.append(cells)
    return headers, rows


def render_html(table: Table) -> str:
    headers, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td><b>{html.escape(t)}</b></td>" if bold else f"<td>{html.escape(t)}</td>" for t, bold in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_markdown(table: Table) -> str:
    headers, rows = table

    def cell(text: str, bold: bool = False) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}**" if bold else text

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(t, b) for t, b in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------- plots
def plot_curves(comparison: Comparison, *, drawdown: bool) -> bytes:
    """Mean across seeds of each method's cumulative return (or drawdown), with a min–max band."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for method, growth in comparison.growth(1.0).items():
        curves = growth / growth.cummax() - 1.0 if drawdown else growth - 1.0
        color = _color(comparison, method)
        label = method if curves.shape[1] == 1 else f"{method} (mean of {curves.shape[1]} seeds: ensemble)"
        ax.plot(curves.index, curves.mean(axis=1), label=label, linewidth=1.2, color=color)
        if curves.shape[1] > 1:
            ax.fill_between(curves.index, curves.min(axis=1), curves.max(axis=1), color=color, alpha=0.15)
    ax.set_ylabel("drawdown" if drawdown else "cumulative return")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    ax.set_title(
        ("Drawdown" if drawdown else "Cumulative return")
        + ": line = mean of the seeds' curves (an ensemble, not a deployable agent), band = min–max of the seeds",
        fontsize=9,
    )
    return figure_png(fig)


def plot_per_period(comparison: Comparison) -> bytes:
    """CR of each method in each window (mean ± std across seeds): bars, or lines past 12 windows."""
    table = comparison.per_period()
    windows = comparison.windows
    methods = [m for m in comparison.methods if m not in comparison.missing]
    fig, ax = plt.subplots(figsize=(min(4 + 0.6 * len(windows) * max(1, len(methods) // 3), 16), 4.2))
    x = np.arange(len(windows))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        means = table.loc[method].reindex(windows)["CR_mean"].to_numpy(dtype=float)
        stds = table.loc[method].reindex(windows)["CR_std"].to_numpy(dtype=float)
        if len(windows) > 12:
            ax.plot(x, means, marker=".", linewidth=1.0, label=method, color=_color(comparison, method))
        else:
            offset = x - 0.4 + (i + 0.5) * width
            yerr = np.nan_to_num(stds)  # one seed: no error bar
            ax.bar(offset, means, width, yerr=yerr, label=method, capsize=2, color=_color(comparison, method))
    ax.set_xticks(
        x, windows, rotation=45 if len(windows) > 6 else 0, ha="right" if len(windows) > 6 else "center"
    )
    ax.set_ylabel("cumulative return in the window")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncols=2)
    ax.set_title("Per test period (mean ± std across seeds)")
    return figure_png(fig)


def _color(comparison: Comparison, method: str) -> str:
    """The same colour for a method in every plot (matplotlib's cycle, by experiment order)."""
    return f"C{comparison.methods.index(method) % 10}"


# ---------------------------------------------------------------------- the report
def _significance_section(comparison: Comparison) -> tuple[Table | None, list[str]]:
    """The significance table and the lines under it (or a line saying why there is none)."""
    try:
        table = comparison.significance()
    except TrustfolioError as exc:
        return None, [f"Significance not computed: {exc}"]
    a = table.attrs
    dsr, spa = a["dsr"], a["hansen_spa"]
    level = f"{SIGNIFICANCE_LEVEL:.0%}".replace("%", " %")
    seeded = [f"{method}: {row['nw_statement']}" for method, row in table.iterrows() if row["n_seeds"] > 1]
    lines = [
        f"Each seed is tested on its own daily excess returns over {a['reference']} ({a['n_returns']} "
        "daily returns; one-sided: does the seed earn more?), never a mean across seeds, which is an "
        "ensemble of the seeds, not a deployable agent. Per seed (in seed order): Newey-West and "
        "stationary-bootstrap p-values, and their median. Holm p: the smallest of the method's "
        "per-seed p-values after Holm's adjustment across its seeds (statsmodels); below "
        f"{SIGNIFICANCE_LEVEL:g} at least one seed beats the reference with a family-wise error of at "
        f"most {level}. Holm {level}: the seeds significant after that adjustment. q: "
        "Benjamini-Hochberg across methods of the Holm p. A method with one series (deterministic) "
        "is tested once.",
        *([f"Newey-West, seed by seed — {'; '.join(seeded)}."] if seeded else []),
        f"Does any of the {a['n_models']} per-seed series of the {a['n_methods']} "
        f"method{'s' if a['n_methods'] > 1 else ''} besides {a['reference']} beat {a['benchmark']}? "
        "Every seed is a candidate, named method#seed. "
        f"White Reality Check (arch, not studentized): Reality Check p = {a['reality_check_p']:.3f} "
        f"(best mean: {a['rc_best']}). "
        f"Hansen SPA (studentized): SPA p = {spa.consistent:.3f} (consistent; lower {spa.lower:.3f}, "
        f"upper {spa.upper:.3f}; best studentized mean: {spa.best}). Studentizing divides each "
        "series' mean excess by its own bootstrap standard error, so a volatile series cannot mask a "
        "steady one.",
        f"Deflated Sharpe ratio of {a['dsr_series']}, the series with the highest Sharpe ratio among "
        f"all {a['n_trials']} per-seed series (every seed of every method, {a['reference']} included, "
        f"is a trial): DSR = {dsr.dsr:.3f}, the probability that its true Sharpe ratio exceeds "
        f"{dsr.sr0_annualized:.2f}, the best {a['n_trials']} skill-less trials would reach by luck "
        f"(its annualized SR on these days: {dsr.sr_annualized:.2f}).",
    ]
    return significance_cells(table), lines


def _curves_note(comparison: Comparison) -> list[str]:
    """Say which curves are ensembles: a method's line is the mean of its seeds' curves."""
    seeds = {m: len(by_seed) for m, by_seed in comparison.chains(1.0).items()}
    by_count: dict[int, list[str]] = {}
    for method, n in seeds.items():
        if n > 1:
            by_count.setdefault(n, []).append(method)
    if not by_count:
        return ["Each line is one run."]
    groups = "; ".join(f"{', '.join(methods)}: {ensemble_label(n)}" for n, methods in by_count.items())
    return [
        "A method with several seeds is drawn as the mean of its seeds' curves, an ensemble, with the "
        f"min–max band of its seeds (each seed is one agent). {groups}."
    ]


def write_comparison_report(
    comparison: Comparison,
    out_dir: str | Path,
    *,
    title: str,
    facts: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write ``report.html``, ``report.md`` and the PNGs into `out_dir`; returns the HTML path.

    `facts` are (label, text) lines about the run (data, protocol, costs) shown at the top.
    """
    out_dir = Path(out_dir)
    several_windows = len(comparison.windows) > 1
    several_costs = len(comparison.cost_multiples) > 1

    pictures = {
        "cumulative_return.png": ("Cumulative return", plot_curves(comparison, drawdown=False)),
        "drawdown.png": ("Drawdown", plot_curves(comparison, drawdown=True)),
    }
    # (heading, table or None, paragraphs under it, picture filenames)
    sections: list[tuple[str, Table | None, list[str], list[str]]] = []
    if facts:
        sections.append(
            ("Facts", (["", ""], [[(label, True), (text, False)] for label, text in facts]), [], [])
        )
    summary_note = (
        f"Mean ± std across seeds (n seeds) of each seed's own metrics at nominal costs (not the "
        f"metrics of a mean across seeds, which would be an ensemble), each seed's metrics over "
        f"{'its chained test windows' if several_windows else 'the test window'}; best of each column "
        f"in bold. CR cumulative return, AR annualized return, SR annualized Sharpe (risk-free 0), "
        f"MDD maximum drawdown (trustfolio.evaluation.metrics)."
    )
    missing_lines = [f"Missing method {m}: {reason}." for m, reason in comparison.missing.items()]
    summary_table = metrics_mean_std_table(comparison.summary(1.0), list(comparison.missing))
    sections.append(("Metrics", summary_table, [summary_note, *missing_lines], []))
    significance, lines = _significance_section(comparison)
    note = f"Holm p- and q-values below {SIGNIFICANCE_LEVEL:g} in bold."
    sections.append(("Significance", significance, [*lines, note] if significance else lines, []))
    sections.append(("Curves", None, _curves_note(comparison), list(pictures)))
    if several_windows:
        pictures["per_period.png"] = ("Per period", plot_per_period(comparison))
        table = per_period_cells(comparison.per_period(), comparison.windows, comparison.methods)
        sections.append(("Per test period", table, ["Cumulative return of each window."], ["per_period.png"]))
    if several_costs:
        table = cost_stress_cells(comparison.cost_stress(), comparison.methods, comparison.cost_multiples)
        sections.append(("Cost stress", table, ["Costs multiplied by ×k; mean ± std across seeds."], []))
    if comparison.failed:
        failures = list(comparison.failed.items())
        rows = [[(job_id, False), (error, False)] for job_id, error in failures[:MAX_FAILURES_SHOWN]]
        more = (
            [f"… and {len(failures) - MAX_FAILURES_SHOWN} more."]
            if len(failures) > MAX_FAILURES_SHOWN
            else []
        )
        text = ["Each job's error.txt holds the full traceback.", *more]
        sections.append((f"Failed jobs ({len(failures)})", (["job", "error"], rows), text, []))

    html_text = _html_document(title, sections, pictures, comparison.experiment_text)
    markdown_text = _markdown_document(title, sections, pictures, comparison.experiment_text)
    out_dir.mkdir(parents=True, exist_ok=True)
    for filename, (_, png) in pictures.items():
        write_atomic(out_dir / filename, png)
    write_atomic(out_dir / "report.md", markdown_text.encode("utf-8"))
    write_atomic(out_dir / "report.html", html_text.encode("utf-8"))
    return out_dir / "report.html"


def _html_document(title, sections, pictures, config_text: str) -> str:
    parts = []
    for heading, table, paragraphs, figures in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if table is not None:
            parts.append(render_html(table))
        parts += [f"<p>{html.escape(p)}</p>" for p in paragraphs]
        for filename in figures:
            encoded = base64.b64encode(pictures[filename][1]).decode()
            parts.append(f'<img alt="{filename}" src="data:image/png;base64,{encoded}">')
    if config_text:
        parts.append(f"<h2>Experiment</h2><pre>{html.escape(config_text)}</pre>")
    head = html_head(title, max_width=1100, extra_css="pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }")
    return head + f"""<h1>{html.escape(title)}</h1>
{"".join(parts)}
</body></html>
"""


def _markdown_document(title, sections, pictures, config_text: str) -> str:
    parts = [f"# {title}"]
    for heading, table, paragraphs, figures in sections:
        parts.append(f"## {heading}")
        if table is not None:
            parts.append(render_markdown(table))
        parts += paragraphs
        parts += [f"![{pictures[f][0]}]({f})" for f in figures]
    if config_text:
        parts.append(f"## Experiment\n\n```yaml\n{config_text.rstrip()}\n```")
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------- from a run directory
def experiment_facts(comparison: Comparison) -> list[tuple[str, str]]:
    """What a reader needs to know about the run: data, protocol, methods, seeds, costs, jobs."""
    experiment = comparison.experiment
    first = comparison.jobs[0].result
    dates = np.unique(np.concatenate([j.result.dates for j in comparison.jobs]))
    protocol = experiment.get("protocol") or {}
    kind = (
        str(protocol.get("kind") or protocol.get("type") or "")
        if isinstance(protocol, dict)
        else str(protocol)
    )
    seeds = experiment.get("seeds") or sorted({j.seed for j in comparison.jobs})
    windows = comparison.windows
    named = windows != [kind]  # an offline run's one window is called "offline": do not repeat it
    window_names = f" ({', '.join(windows[:6])}{', …' if len(windows) > 6 else ''})" if named else ""
    multiples = ", ".join(f"×{m:g}" for m in comparison.cost_multiples)
    cost_bps = experiment.get("cost_bps")
    return [
        ("dataset", f"{experiment.get('dataset', '?')}: {len(first.tickers)} stocks in the first job"),
        (
            "protocol",
            f"{kind + ': ' if kind else ''}{len(windows)} test window{'s' if len(windows) > 1 else ''}"
            f"{window_names}",
        ),
        (
            "test days",
            f"{dates[0]} → {dates[-1]}: {len(dates)} trading days{' in all windows' if len(windows) > 1 else ''}, {len(dates) - 1} daily "
            "returns (the first day has none; the statistics use the returns)",
        ),
        ("methods", ", ".join(comparison.methods)),
        ("seeds", ", ".join(str(s) for s in seeds) + " (deterministic methods run seed 0 only)"),
        (
            "costs",
            (f"{cost_bps:g} bps per side, " if cost_bps is not None else "") + f"multiples {multiples}",
        ),
        ("reference", comparison.reference),
        ("jobs", f"{len(comparison.jobs)} finished, {len(comparison.failed)} failed"),
    ]


def build_report(run_dir: str | Path) -> Path:
    """Rebuild ``report.html`` and ``report.md`` of a run directory from its finished jobs.

    Raises `UserError` when `run_dir` does not exist or has no finished job.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; pass the directory an experiment run wrote")
    comparison = Comparison.from_run_dir(run_dir)
    title = f"trustfolio — {comparison.experiment.get('name') or run_dir.name}"
    return write_comparison_report(comparison, run_dir, title=title, facts=experiment_facts(comparison))
