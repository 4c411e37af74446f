"""Paper reproduction tables: missing methods are shown as missing (never zeros), proxies get no
difference, our extra methods are listed as ours only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trustfolio.errors import UserError
from trustfolio.reproduce import (
    METATRADER_TABLE1_CSI,
    comparison_markdown,
    get_reproduction,
    paper_comparison,
    reproduction_experiment,
)


def summary_of(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    """A `Comparison.summary()`-shaped frame: `<metric>_mean`, `<metric>_std`, `n`."""
    records = {}
    for method, values in rows.items():
        record = {}
        for metric in ("CR", "AR", "SR", "MDD"):
            record[f"{metric}_mean"] = values[metric]
            record[f"{metric}_std"] = values.get(f"{metric}_std", float("nan"))
        record["n"] = values.get("n", 1)
        records[method] = record
    return pd.DataFrame.from_dict(records, orient="index")


def test_paper_rows_without_our_method_are_missing_not_zero():
    reproduction = get_reproduction("metatrader-table1")
    summary = summary_of(
        {
            "market": {"CR": 0.71, "AR": 0.19, "SR": 0.93, "MDD": 0.26},
            "sac": {"CR": 0.90, "AR": 0.24, "SR": 0.95, "MDD": 0.30, "CR_std": 0.05, "n": 3},
            "equal-weight": {"CR": 0.72, "AR": 0.20, "SR": 1.02, "MDD": 0.20},
        }
    )
    table = paper_comparison(reproduction, summary).set_index("paper row", drop=False)
    assert len(table[table["paper row"] != "(not in paper)"]) == len(METATRADER_TABLE1_CSI)
    hatr = table.loc["HATR"]
    assert hatr["status"].startswith("missing") and pd.isna(hatr["CR ours"]) and pd.isna(hatr["seeds"])
    sac = table.loc["FinRL-SAC"]
    assert sac["CR ours"] == pytest.approx(0.90) and sac["CR diff"] == pytest.approx(0.90 - 0.83)
    assert sac["CR ours std"] == pytest.approx(0.05) and sac["seeds"] == 3
    market = table.loc["Market benchmark"]  # our market is a proxy: shown, but no difference taken
    assert market["CR ours"] == pytest.approx(0.71) and pd.isna(market["CR diff"])
    assert "proxy" in market["status"]
    ours_only = table[table["paper row"] == "(not in paper)"]
    assert list(ours_only["our method"]) == ["equal-weight"]
    markdown = comparison_markdown(reproduction, paper_comparison(reproduction, summary), notes=["a note"])
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in lines}) == 1  # a well-formed Markdown table
    assert "| +0.90 ± 0.05 |" in markdown and "- a note" in markdown


def test_the_experiment_runs_the_selected_methods_with_the_reference(tmp_path: Path):
    reproduction = get_reproduction("metatrader-table1")
    experiment = reproduction_experiment(reproduction, tmp_path, seeds=2, budget="cpu", methods=["momentum"])
    names = [m["name"] for m in experiment["methods"]]
    assert names == ["equal-weight", "momentum"]
    assert experiment["protocol"]["test"] == ["2019-04-01", "2022-04-01"]
    assert experiment["cost_multiples"] == [1.0, 0.0] and experiment["seeds"] == 2
    every = reproduction_experiment(reproduction, tmp_path, seeds=1, budget="cpu")
    sac = next(m for m in every["methods"] if m["name"] == "sac")
    assert sac["config"]["budget"] == "cpu" and sac["config"]["initial_cash"] == 1e7
    with pytest.raises(UserError, match="unknown method 'nope'"):
        reproduction_experiment(reproduction, tmp_path, seeds=1, budget="cpu", methods=["nope"])
    with pytest.raises(UserError, match="unknown reproduction"):
        get_reproduction("metatrader-table9")
