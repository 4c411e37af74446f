"""The `trustfolio` command: a thin layer over the Python API (typer + rich).

User mistakes (`TrustfolioError`, a missing file) print one line on stderr and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from trustfolio.errors import TrustfolioError, UserError
from trustfolio.terminal import INTERRUPTED, caused_by_ctrl_c, library_warnings, version_line

app = typer.Typer(
    help="Robust RL portfolio optimization: leak-free data, batched simulator, honest backtests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect market data.", no_args_is_help=True)
bench_app = typer.Typer(help="Performance benchmarks.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")

console = Console()
errors = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        console.print(version_line(), markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the version (and git commit) and exit")] = False,  # fmt: skip
) -> None:
    """Robust RL portfolio optimization: leak-free data, batched simulator, honest backtests."""


def agents_help() -> str:
    """The registered agents, one line each (the epilog of `trustfolio train --help`)."""
    from trustfolio.agents.registry import AGENTS

    width = max(map(len, AGENTS))
    lines = [f"{name.ljust(width)}  {description}" for name, (_, description) in AGENTS.items()]
    return "Agents (trustfolio train AGENT):\n\b\n" + "\n".join(lines)

OnOutliers = Annotated[str, typer.Option(help="one-day spikes and stale prices in the data: fail (refuse the data) | warn (keep and list them) | clip (fill spike days like suspended days)")]
DatasetArg = Annotated[str, typer.Option("--dataset", "-d", help="sp500 | stockformer:PATH | yahoo-dir:PATH | table:PATH | yahoo:T1,T2")]


def metrics_rich_table(title: str, metrics: dict[str, dict[str, float]]) -> Table:
    """One row per metric, one column per strategy: a few strategies always fit 80 columns."""
    from trustfolio.evaluation.report import TABLE_COLUMNS, format_metric

    # The terminal gets the headline metrics; saved results have them all.
    headline = ("CR", "AR", "SR", "MDD", "volatility", "sortino", "calmar", "turnover", "total_costs", "idle_cash")
    rows = [c for c in headline if any(c in m for m in metrics.values())]
    table = Table(title=title)
    table.add_column("metric", style="bold", no_wrap=True)
    for name in metrics:
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(TABLE_COLUMNS[row][0], *(format_metric(row, values.get(row)) for values in metrics.values()))
    return table


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["lookback=63", "top_k=5"]`` -> ``{"lookback": 63, "top_k": 5}``; values are read as YAML
    scalars, so numbers become numbers and ``true``/``false`` booleans."""
    params: dict[str, Any] = {}
    for item in items:
        name, equals, text = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise UserError(f"--param {item!r}: expected NAME=VALUE, e.g. --param lookback=63")
        if name in params:
            raise UserError(f"--param {name} is given twice; give each parameter once")
        try:
            params[name] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            params[name] = text
    return params


def warn_idle_cash(metrics: dict[str, dict[str, float]], hint: str = "") -> None:
    """One line on stderr per strategy that kept more than `IDLE_CASH_WARNING` of its value in cash
    on an average day: its numbers then mostly measure lot rounding, not the strategy."""
    from trustfolio.evaluation.metrics import IDLE_CASH_WARNING

    for name, values in metrics.items():
        idle = values.get("idle_cash")
        if idle is not None and idle == idle and idle > IDLE_CASH_WARNING:
            errors.print(
                f"warning: {name} left {idle:.0%} of its value idle in cash on an average day (above "
                f"{IDLE_CASH_WARNING:.0%}), mostly from rounding orders to whole lots{hint}",
                markup=False, highlight=False, soft_wrap=True,
            )


@app.command("datasets")
def datasets_command() -> None:
    """List the dataset names the other commands accept."""
    from trustfolio.data.loaders import DATASETS

    table = Table(title="datasets")
    table.add_column("name")
    table.add_column("what it is")
    for name, description in DATASETS.items():
        table.add_row(name, description)
    console.print(table)


@data_app.command("inspect")
def inspect_command(
    dataset: Annotated[str, typer.Argument(help="a dataset name, see `trustfolio datasets`")],
    train_start: Annotated[str | None, typer.Option(help="training window start (coverage is judged on it)")] = None,
    train_end: Annotated[str | None, typer.Option(help="training window end")] = None,
    min_coverage: Annotated[float, typer.Option(help="keep stocks traded on at least this share of training days")] = 0.98,
    on_outliers: OnOutliers = "fail",
) -> None:
    """Load DATASET, clean it, and print what it holds and what cleaning changed."""
    from trustfolio.data.cleaning import clean
    from trustfolio.data.loaders import load_dataset

    raw = load_dataset(dataset)
    panel, report = clean(raw, train_start=train_start, train_end=train_end, min_coverage=min_coverage, on_outliers=on_outliers)
    console.print(f"[bold]{dataset}[/bold]: {raw!r}")
    facts = Table(show_header=False)
    facts.add_row("trading days", f"{panel.T}  ({panel.start} → {panel.end})")
    facts.add_row("stocks kept", f"{panel.N} of {raw.N}")
    facts.add_row("calendar", f"{panel.calendar.trading_days_per_year} days/year, lot {panel.calendar.lot_size}, {panel.calendar.currency}")
    facts.add_row("benchmark", panel.benchmark_name or "none (market = equal-weight buy-and-hold proxy)")
    facts.add_row("cleaning", report.summary())
    console.print(facts)
    outliers = [("one-day spike", t, day) for t, days in report.spikes.items() for day in days]
    outliers += [("stale price", t, run) for t, runs in report.flat_runs.items() for run in runs]
    if outliers:
        table = Table(title=f"outliers (--on-outliers {on_outliers})")
        for column in ("kind", "ticker", "day(s)"):
            table.add_column(column)
        for row in outliers:
            table.add_row(*row)
        console.print(table)
    closes = panel.close
    stats = Table(title="close price by stock (first 20)")
    for column in ("ticker", "first", "last", "min", "max", "total return"):
        stats.add_column(column, justify="right")
    for n, ticker in enumerate(panel.tickers[:20]):
        c = closes[:, n]
        stats.add_row(ticker, f"{c[0]:.2f}", f"{c[-1]:.2f}", f"{c.min():.2f}", f"{c.max():.2f}", f"{c[-1] / c[0] - 1:+.2f}")
    console.print(stats)


@app.command("backtest")
def backtest_command(
    strategy: Annotated[list[str], typer.Option("--strategy", "-s", help="market | equal-weight | buy-and-hold | min-variance | max-sharpe | momentum")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="a strategy parameter NAME=VALUE, e.g. lookback=63 (repeatable)")] = None,
    dataset: DatasetArg = "sp500",
    start: Annotated[str | None, typer.Option(help="first test day (YYYY-MM-DD)")] = None,
    end: Annotated[str | None, typer.Option(help="last test day (YYYY-MM-DD)")] = None,
    cost_bps: Annotated[float, typer.Option(help="proportional cost per side, basis points")] = 10.0,
    initial_cash: Annotated[float, typer.Option(help="starting capital in the dataset's currency")] = 1e6,
    lots: Annotated[bool, typer.Option(help="round share quantities to the market's lot size")] = True,
    fill: Annotated[str, typer.Option(help="close (fill at the close of the decision day) | next_open")] = "close",
    out: Annotated[Path | None, typer.Option(help="directory to save daily.parquet and metrics.json")] = None,
    on_outliers: OnOutliers = "fail",
) -> None:
    """Backtest one classic strategy on DATASET between START and END."""
    from trustfolio.data.cleaning import clean
    from trustfolio.data.loaders import load_dataset
    from trustfolio.evaluation.backtest import backtest
    from trustfolio.strategies import STRATEGIES, make_strategy

    if len(strategy) > 1:
        raise UserError(
            f"--strategy was given {len(strategy)} times ({', '.join(strategy)}); give it once, one of "
            f"{', '.join(STRATEGIES)} (to compare several, list them in an experiment file for `trustfolio run`)"
        )
    strategy = strategy[0]
    params = parse_params(param or [])
    if cost_bps < 0:
        raise UserError(f"--cost-bps must be >= 0, got {cost_bps}")
    if initial_cash <= 0:
        raise UserError(f"--initial-cash must be > 0, got {initial_cash}")
    if fill not in ("close", "next_open"):
        raise UserError(f"--fill must be 'close' or 'next_open', got {fill!r}")
    policy = make_strategy(strategy, **params)
    raw = load_dataset(dataset)
    i0, i1 = raw.span(start, end)
    # Stock coverage is judged on the days before the test window (all days if it starts the panel).
    train_end = raw.dates[i0 - 1] if i0 > 0 else raw.dates[i1 - 1]
    panel, _ = clean(raw.take_days(slice(0, i1)), train_end=train_end, on_outliers=on_outliers)
    result = backtest(
        policy, panel, raw.dates[i0], raw.dates[i1 - 1],
        cost_bps=cost_bps, initial_cash=initial_cash, round_lots=lots, fill=fill,
    )
    result.config["strategy_params"] = params
    console.print(metrics_rich_table(f"{strategy} on {dataset}, {raw.dates[i0]} → {raw.dates[i1 - 1]}, {cost_bps:g} bps", {result.name: result.metrics()}))
    warn_idle_cash({result.name: result.metrics()}, "; raise --initial-cash or pass --no-lots")
    if out is not None:
        result.save(out)
        console.print(f"saved: {out / 'metrics.json'}, {out / 'daily.parquet'}")


Workers = Annotated[int | None, typer.Option(help="parallel jobs on the local pool (default: CPU cores)")]
Backend = Annotated[str, typer.Option(help="local (process pool) | ray")]
Address = Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local Ray)")]


def _check_backend(backend: str) -> None:
    if backend not in ("local", "ray"):
        raise UserError(f"--backend must be 'local' or 'ray', got {backend!r}")


@app.command("run")
def run_command(
    experiment: Annotated[Path | None, typer.Argument(help="experiment YAML (default: the packaged quickstart)")] = None,
    out: Annotated[Path, typer.Option(help="where run directories go")] = Path("runs"),
    name: Annotated[str | None, typer.Option(help="run directory name (default: the experiment's name)")] = None,
    workers: Workers = None,
    backend: Backend = "local",
    address: Address = None,
) -> None:
    """The main job: run an experiment (default: classic portfolios on the embedded S&P 500 data,
    3 seeds, costs ×1/×3/×5), print the table and write the report. Rerunning skips finished jobs."""
    from trustfolio.quickstart import run_main_job

    _check_backend(backend)
    result = run_main_job(experiment, out_root=out, name=name, workers=workers, backend=backend, address=address)
    console.print(result.summary.describe())
    _print_comparison(result.comparison)
    console.print(f"metrics: {result.run_dir / 'metrics.json'}")
    console.print(f"report: {result.report}")


def _print_comparison(comparison) -> None:
    """Mean ± std table (costs ×1) and, when there are several, the other cost multiples' CR/SR."""
    summary = comparison.summary(1.0)
    # The terminal gets the headline columns in 80 characters; the report has them all.
    formats = {"CR": "{:+.2f}", "SR": "{:.2f}", "MDD": "{:.2f}", "total_costs": "{:.2%}", "idle_cash": "{:.1%}"}
    headers = {"total_costs": "costs", "idle_cash": "idle"}
    columns = [c for c in formats if f"{c}_mean" in summary.columns]
    table = Table(title="mean ± std over seeds (costs ×1; deterministic methods: one run)")
    table.add_column("method", style="bold", no_wrap=True)
    for column in columns:
        table.add_column(headers.get(column, column), justify="right", no_wrap=True)
    table.add_column("n", justify="right")  # seeds
    for method, row in summary.iterrows():
        cells = []
        for c in columns:
            mean, std = row[f"{c}_mean"], row[f"{c}_std"]
            text = "–" if mean != mean else formats[c].format(mean)
            with_std = std == std and c in ("CR", "SR", "MDD")  # NaN std: a single run
            cells.append(f"{text}±{std:.2f}" if with_std else text)
        table.add_row(str(method), *cells, str(int(row["n"])))
    console.print(table)
    if len(comparison.cost_multiples) > 1:
        stress = comparison.cost_stress()
        cost_table = Table(title="cost stress: CR (SR) by cost multiple")
        cost_table.add_column("method", style="bold")
        multiples = sorted(comparison.cost_multiples)
        for multiple in multiples:
            cost_table.add_column(f"×{multiple:g}", justify="right")
        for method in summary.index:
            cells = []
            for multiple in multiples:
                key = (method, multiple)
                if key in stress.index and stress.loc[key, "CR_mean"] == stress.loc[key, "CR_mean"]:
                    cells.append(f"{stress.loc[key, 'CR_mean']:+.3f} ({stress.loc[key, 'SR_mean']:.2f})")
                else:
                    cells.append("–")
            cost_table.add_row(str(method), *cells)
        console.print(cost_table)
    warn_idle_cash({str(m): {"idle_cash": summary.loc[m, "idle_cash_mean"]} for m in summary.index if "idle_cash_mean" in summary})
    for method, reason in comparison.missing.items():
        errors.print(f"missing: {method}: {reason}", markup=False)


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by `trustfolio run` or `reproduce`")],
) -> None:
    """Rebuild report.html / report.md (and metrics.json, daily.parquet) from a run's finished jobs."""
    from trustfolio.evaluation.comparison import Comparison
    from trustfolio.evaluation.experiment_report import build_report
    from trustfolio.quickstart import write_tables

    report = build_report(run_dir)
    comparison = Comparison.from_run_dir(run_dir)
    write_tables(comparison, run_dir)
    _print_comparison(comparison)
    console.print(f"report: {report}")


@app.command("reproduce")
def reproduce_command(
    target: Annotated[str, typer.Argument(help="metatrader-table1 | metatrader-online")],
    data_dir: Annotated[Path, typer.Option(help="StockFormer-format CSI data (e.g. ../shared/data/csi88)")],
    seeds: Annotated[int, typer.Option(help="seeds per learning method")] = 3,
    budget: Annotated[str, typer.Option(help="quick (minutes: to try it) | cpu (each agent's CPU config) | paper")] = "cpu",
    out: Annotated[Path, typer.Option(help="where run directories go")] = Path("runs"),
    docs_dir: Annotated[Path | None, typer.Option(help="also copy the Markdown and PNG plots here")] = None,
    methods: Annotated[str | None, typer.Option(help="comma-separated methods (default: every registered one)")] = None,
    workers: Workers = None,
    backend: Backend = "local",
    address: Address = None,
) -> None:
    """Run a paper's protocol for every method we have and print ours beside the paper's figures."""
    from trustfolio.reproduce import comparison_rich_table, reproduce

    _check_backend(backend)
    result = reproduce(
        target, data_dir, seeds=seeds, budget=budget, out_root=out, docs_dir=docs_dir,
        methods=None if methods is None else [m.strip() for m in methods.split(",") if m.strip()],
        workers=workers, backend=backend, address=address,
    )
    console.print(comparison_rich_table(result.reproduction, result.table, title=result.reproduction.title))
    console.print("missing rows are methods not implemented yet; 'market' is a proxy (see the notes)")
    console.print(f"full table with std and differences: {result.run_dir / 'reproduction.md'}")
    console.print(f"report: {result.report}")
    if result.docs_page is not None:
        console.print(f"docs page: {result.docs_page}")


@app.command("train", epilog=agents_help())
def train_command(
    agent: Annotated[str, typer.Argument(help="an agent name (sac, ddpg, …; see `trustfolio train --help`)")],
    dataset: DatasetArg = "sp500",
    budget: Annotated[str, typer.Option(help="quick | cpu | paper: the agent's preset sizes (quick: seconds; cpu: minutes; paper: the paper's)")] = "quick",
    config: Annotated[str | None, typer.Option(help="a YAML/JSON file overriding fields of the --budget preset (it may name its own `budget:`)")] = None,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same result)")] = 0,
    steps: Annotated[int | None, typer.Option(help="environment steps (default: the budget's)")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default: runs/train-<agent>-<dataset>-<data hash>-seed<S>)")] = None,
    train_start: Annotated[str | None, typer.Option(help="first training day (default: the dataset's split)")] = None,
    train_end: Annotated[str | None, typer.Option(help="last training day")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    on_outliers: OnOutliers = "fail",
    fresh: Annotated[bool, typer.Option("--fresh", help="start over: remove what an earlier run wrote in the run directory")] = False,
) -> None:
    """Train an RL agent on DATASET's training window; rerunning the same command resumes from the
    last checkpoint (a run directory of another run is refused, unless --fresh)."""
    from trustfolio.agent_runs import train_agent
    from trustfolio.agents.registry import agent_class

    budgets = agent_class(agent).budgets  # an unknown agent fails here, naming the known ones
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be >= 1 (environment steps to train), got {steps}")
    if config is not None and config in budgets and not Path(config).exists():
        budget, config = config, None  # `--config cpu`, the old spelling of `--budget cpu`, still works
    run_dir = train_agent(
        agent, dataset, config=config, budget=budget, seed=seed, steps=steps, out_dir=out,
        train_start=train_start, train_end=train_end, device=device, on_outliers=on_outliers, fresh=fresh,
    )
    console.print(f"trained: {run_dir}  (evaluate with `trustfolio evaluate {run_dir} --dataset {dataset}`)",
                  soft_wrap=True)


@app.command("evaluate")
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="a directory written by `trustfolio train`")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="default: the dataset it was trained on")] = None,
    start: Annotated[str | None, typer.Option(help="first test day (default: the day after training)")] = None,
    end: Annotated[str | None, typer.Option(help="last test day")] = None,
    cost_bps: Annotated[float, typer.Option(help="proportional cost per side, basis points")] = 10.0,
    on_outliers: OnOutliers = "fail",
) -> None:
    """Backtest a trained agent beside 1/N, with and without costs; writes RUN_DIR/metrics.json."""
    from trustfolio.agent_runs import evaluate_run

    if cost_bps < 0:
        raise UserError(f"--cost-bps must be >= 0, got {cost_bps}")
    document = evaluate_run(run_dir, dataset, start, end, cost_bps=cost_bps, on_outliers=on_outliers)
    how = "" if start is not None else " (from the day after training)"
    console.print(f"test window: {document['start']} → {document['end']}{how}", markup=False, highlight=False)
    console.print(metrics_rich_table(f"{cost_bps:g} bps per side", document["strategies"]))
    console.print(metrics_rich_table("without costs", document["strategies_no_costs"]))
    warn_idle_cash(document["strategies"])
    console.print(f"metrics: {Path(run_dir) / 'metrics.json'}")


@bench_app.command("env")
def bench_env_command(
    data_dir: Annotated[Path, typer.Option(help="a StockFormer-format directory (88 CSI stocks)")] = Path("../shared/data/csi88"),
    runs: Annotated[int, typer.Option(help="repetitions; medians are reported")] = 5,
    threads: Annotated[int, typer.Option(help="torch threads")] = 1,
    dtype: Annotated[str, typer.Option(help="float64 (default, exact accounting) | float32")] = "float64",
    finrl: Annotated[bool, typer.Option(help="also time FinRL's StockTradingEnv (needs `make bench`)")] = True,
) -> None:
    """Simulator throughput (portfolio-steps/s) at B=1 and B=1024 against FinRL's StockTradingEnv."""
    # The benchmarks live beside the package, not in it: run from the repository root.
    if (Path.cwd() / "benchmarks" / "bench_env.py").is_file() and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        from benchmarks.bench_env import main as bench_main
    except ImportError as exc:
        raise UserError("benchmarks/ not found: run `trustfolio bench env` from the repository root") from exc
    if dtype not in ("float64", "float32"):
        raise UserError(f"--dtype must be float64 or float32, got {dtype!r}")
    bench_main(data_dir=data_dir, runs=runs, threads=threads, dtype=dtype, finrl=finrl)


def main() -> None:
    """Entry point: user mistakes become one line and exit status 2; Ctrl-C one line and status 130
    (checkpoints and results are written atomically, so the same command resumes)."""
    try:
        with library_warnings():
            app()
    except (TrustfolioError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        errors.print(INTERRUPTED, markup=False, highlight=False, soft_wrap=True)
        sys.exit(130)
    except SystemExit as exc:  # typer turns Ctrl-C into a silent exit 130
        if exc.code == 130 and caused_by_ctrl_c(exc):
            errors.print(INTERRUPTED, markup=False, highlight=False, soft_wrap=True)
        raise


if __name__ == "__main__":
    main()
