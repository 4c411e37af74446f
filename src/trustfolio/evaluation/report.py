"""A readable report of several backtests: metrics table, cumulative-return and drawdown plots.

`write_report(results, out_dir, ...)` writes `report.html` (self-contained: the PNGs are embedded, so
the file opens offline and can be mailed) plus the PNG files themselves.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are written headless; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trustfolio.files import write_atomic  # noqa: E402

# Columns of the metrics table, in reading order: (header, format, which way is better).
TABLE_COLUMNS: dict[str, tuple[str, str, str | None]] = {
    "CR": ("CR", "{:+.3f}", "max"),
    "AR": ("AR", "{:+.3f}", "max"),
    "SR": ("SR", "{:.2f}", "max"),
    "MDD": ("MDD", "{:.3f}", "min"),
    "volatility": ("vol", "{:.3f}", "min"),
    "sortino": ("Sortino", "{:.2f}", "max"),
    "calmar": ("Calmar", "{:.2f}", "max"),
    "turnover": ("turnover/day", "{:.2%}", None),
    "total_costs": ("costs", "{:.2%}", None),
    "idle_cash": ("idle cash", "{:.1%}", None),
}


def format_metric(column: str, value: float) -> str:
    return "–" if value is None or pd.isna(value) else TABLE_COLUMNS[column][1].format(value)


def metrics_table(metrics: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """One row per strategy, the columns of `TABLE_COLUMNS` that are present."""
    frame = pd.DataFrame.from_dict({k: dict(v) for k, v in metrics.items()}, orient="index")
    return frame[[c for c in TABLE_COLUMNS if c in frame.columns]]


def figure_png(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def plot_curves(daily: pd.DataFrame, *, drawdown: bool) -> bytes:
    """Cumulative return (or drawdown) of every strategy in a long `daily` frame, as PNG bytes."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for name, group in daily.groupby("strategy", sort=False):
        values = group["value"].to_numpy(dtype=np.float64)
        dates = pd.to_datetime(group["date"])
        if drawdown:
            curve = values / np.maximum.accumulate(values) - 1.0
        else:
            curve = values / values[0] - 1.0
        ax.plot(dates, curve, label=str(name), linewidth=1.2)
    ax.set_ylabel("drawdown" if drawdown else "cumulative return")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    ax.set_title("Drawdown" if drawdown else "Cumulative return")
    return figure_png(fig)


def _html_table(table: pd.DataFrame) -> str:
    """The metrics table with the best value of each column in bold."""
    best: dict[str, object] = {}
    for column, (_, _, direction) in TABLE_COLUMNS.items():
        if column in table and direction is not None and table[column].notna().any():
            best[column] = table[column].idxmax() if direction == "max" else table[column].idxmin()
    headers = ["strategy", *(TABLE_COLUMNS[c][0] for c in table.columns)]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    rows = []
    for name, row in table.iterrows():
        cells = [f"<td>{html.escape(str(name))}</td>"]
        for column in table.columns:
            text = format_metric(column, row[column])
            cells.append(f"<td><b>{text}</b></td>" if best.get(column) == name else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_report(
    metrics: Mapping[str, Mapping[str, float]],
    daily: pd.DataFrame,
    out_dir: Path,
    *,
    title: str,
    facts: Sequence[tuple[str, str]] = (),
    extra_tables: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
) -> Path:
    """Write `report.html`, `cumulative_return.png` and `drawdown.png` into `out_dir`.

    `metrics` maps strategy -> metric -> value (the main table); `daily` is the long frame with
    `date, strategy, value`; `facts` are (label, text) lines about the run (data, period, costs);
    `extra_tables` are further metric tables under their own heading (e.g. "without costs").
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = {
        "cumulative_return.png": plot_curves(daily, drawdown=False),
        "drawdown.png": plot_curves(daily, drawdown=True),
    }
    for filename, png in pictures.items():
        write_atomic(out_dir / filename, png)

    sections = [f"<h2>Metrics</h2>{_html_table(metrics_table(metrics))}"]
    for heading, table in (extra_tables or {}).items():
        sections.append(f"<h2>{html.escape(heading)}</h2>{_html_table(metrics_table(table))}")
    for filename, png in pictures.items():
        encoded = base64.b64encode(png).decode()
        sections.append(f'<img alt="{filename}" src="data:image/png;base64,{encoded}">')
    fact_rows = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(text)}</td></tr>" for label, text in facts
    )
    document = html_head(title, max_width=1000, extra_css=".facts th { text-align: left; background: #f6f6f6; }")
    document += f"""<h1>{html.escape(title)}</h1>
<table class="facts">{fact_rows}</table>
{"".join(sections)}
<p><small>CR cumulative return, AR annualized return, SR annualized Sharpe (risk-free 0), MDD maximum
drawdown; best value of each column in bold. Metrics as defined in trustfolio.evaluation.metrics.</small></p>
</body></html>
"""
    return write_atomic(out_dir / "report.html", document)


def html_head(title: str, *, max_width: int, extra_css: str = "") -> str:
    """The start of a self-contained report page, up to ``<body>``: one style for every report."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: {max_width}px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 100%; margin: 1em 0; }}
{extra_css}
</style></head><body>
"""
