"""The shared training loop: replay buffer, held-out validation days, logs, resume after SIGKILL,
train_agent / evaluate_run, configs and budgets, the agents as runner methods."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from synthetic import kill_between_checkpoints, pause_after_checkpoints, start_training
from test_agents_sac import SIM, TEST, TRAIN_END, held_out_backtest, tiny_config, trending_market
from trustfolio.agent_runs import default_hmax, evaluate_run, train_agent
from trustfolio.agents import AgentData, ReplayBuffer, SACAgent, SACConfig, resolve_config
from trustfolio.agents.base import Agent
from trustfolio.errors import UserError
from trustfolio.evaluation.protocols import Window
from trustfolio.methods import make_method


# ---------------------------------------------------------------------------------------- replay buffer
def test_replay_buffer_wraps_around_and_gathers_market_states_by_day():
    market = torch.arange(10 * 6, dtype=torch.float32).reshape(10, 6)  # 10 days, N*D = 6
    buffer = ReplayBuffer(capacity=5, n_stocks=2, device=torch.device("cpu"))
    for first_day in (0, 3):  # 3 + 3 rows into 5 slots: the first row is overwritten
        days = torch.arange(first_day, first_day + 3)
        balance = days.float().unsqueeze(-1).repeat(1, 3)
        buffer.add(days, balance, torch.zeros(3, 2), days.float() / 10, balance + 0.5)
    assert buffer.size == 5 and buffer.position == 1 and buffer.day.tolist() == [5, 1, 2, 3, 4]
    batch = buffer.sample(64, np.random.default_rng(0), market)
    assert torch.equal(batch.obs[:, :6], market[batch.day]) and torch.equal(
        batch.next_obs[:, :6], market[batch.day + 1]
    )
    assert torch.equal(batch.obs[:, 6], batch.day.float()) and torch.equal(
        batch.next_obs[:, 6], batch.day + 0.5
    )
    assert torch.allclose(batch.reward, batch.day.float() / 10) and set(batch.day.tolist()) == {1, 2, 3, 4, 5}


def test_rollouts_never_touch_the_validation_days_and_logs_are_written(tmp_path):
    panel, states = trending_market()
    agent = SACAgent(
        panel.N, 5, tiny_config(steps=100, eval_every=50, log_every=25, buffer_size=10_000), seed=0
    )
    summary = agent.fit(AgentData(panel, states, 0, TRAIN_END, SIM), out_dir=tmp_path, progress=False)
    buffer = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["state"]["buffer"]
    # 100 steps x 8 portfolios; next days (day + 1) stay before the 40 held-out days 260..299
    assert (
        buffer["size"] == 800
        and int(buffer["day"].min()) >= 0
        and int(buffer["day"].max()) + 1 <= TRAIN_END - 40
    )
    assert len(set(buffer["day"].tolist())) > 100  # random start days spread over the span
    progress = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert [int(r["step"]) for r in progress] == [25, 50, 75, 100] and progress[-1]["updates"] == "50"
    assert float(progress[-1]["alpha"]) < 0.1  # the temperature is being tuned
    evaluations = list(csv.DictReader((tmp_path / "eval.csv").open()))
    assert [int(r["step"]) for r in evaluations] == [50, 100]
    assert float(evaluations[-1]["CR"]) == pytest.approx(summary.last_eval["CR"])


def test_a_finished_run_is_not_retrained_and_a_different_run_is_refused(tmp_path):
    panel, states = trending_market()
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    first = SACAgent(panel.N, 5, tiny_config(steps=60), seed=0)
    first.fit(data, out_dir=tmp_path, progress=False)
    again = SACAgent(panel.N, 5, tiny_config(steps=60), seed=0)
    summary = again.fit(data, out_dir=tmp_path, progress=False)
    assert summary.resumed_from == 60 and torch.equal(again.log_alpha, first.log_alpha)
    with pytest.raises(UserError, match="differs in seed"):
        SACAgent(panel.N, 5, tiny_config(steps=60), seed=0).fit(
            data, seed=1, out_dir=tmp_path, progress=False
        )
    with pytest.raises(UserError, match="differs in config"):
        SACAgent(panel.N, 5, tiny_config(steps=60, gamma=0.9), seed=0).fit(
            data, out_dir=tmp_path, progress=False
        )
    with pytest.raises(UserError, match="too few"):
        SACAgent(panel.N, 5, tiny_config(episode_length=300), seed=0).fit(
            data, out_dir=tmp_path / "x", progress=False
        )


# ---------------------------------------------------------------------------------------- resume after SIGKILL
def train_for_resume_test(out_dir: str, pause: float = 0.0) -> None:
    """What the subprocesses run: a small SAC fit, then its final weights and held-out metrics.
    `pause` sleeps after each checkpoint (wall time only) so the test can kill between checkpoints."""
    import trustfolio.agents.harness as harness

    if pause:
        pause_after_checkpoints(harness, pause)
    panel, states = trending_market()
    agent = SACAgent(
        panel.N, 5, tiny_config(steps=120, checkpoint_every=30, eval_every=20, log_every=10), seed=5
    )
    summary = agent.fit(
        AgentData(panel, states, 0, TRAIN_END, SIM), out_dir=Path(out_dir) / "fit", progress=False
    )
    agent.save(Path(out_dir) / "agent.pt")
    metrics = held_out_backtest(agent.policy(states), panel).metrics()
    (Path(out_dir) / "result.json").write_text(
        json.dumps({"metrics": metrics, "resumed_from": summary.resumed_from})
    )


def _run(out_dir: Path, pause: float = 0.0):
    return start_training("test_agents_training", out_dir, pause)


def test_a_run_killed_with_sigkill_resumes_to_the_same_final_agent_and_metrics(tmp_path):
    uninterrupted = _run(tmp_path / "uninterrupted")  # runs meanwhile
    killed_dir = tmp_path / "killed"
    process = _run(killed_dir, pause=0.5)
    checkpoint = killed_dir / "fit" / "checkpoint.pt"
    kill_between_checkpoints(process, checkpoint, pause=0.5, timeout=120)
    assert checkpoint.exists(), process.stderr.read().decode()[-2000:]
    assert not (killed_dir / "agent.pt").exists()  # it did not finish
    resumed = _run(killed_dir)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read().decode()[-2000:]

    reference = json.loads((tmp_path / "uninterrupted" / "result.json").read_text())
    result = json.loads((killed_dir / "result.json").read_text())
    assert reference["resumed_from"] is None and result["resumed_from"] in (30, 60, 90)
    assert result["metrics"] == reference["metrics"]  # bit-identical final metrics
    a = torch.load(tmp_path / "uninterrupted" / "agent.pt", weights_only=True)["learner"]
    b = torch.load(killed_dir / "agent.pt", weights_only=True)["learner"]
    for name in ("actor", "q1", "q2", "q1_target", "q2_target"):
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name])
    assert torch.equal(a["log_alpha"], b["log_alpha"]) and a["updates"] == b["updates"] == 70

    def rows(run: Path, file: str) -> list[dict]:  # the logs, without wall-clock seconds
        return [
            {k: v for k, v in r.items() if k != "seconds"}
            for r in csv.DictReader((run / "fit" / file).open())
        ]

    for file in ("progress.csv", "eval.csv"):
        assert rows(killed_dir, file) == rows(tmp_path / "uninterrupted", file)  # no duplicate or lost rows


# ---------------------------------------------------------------------------------------- configs
def test_config_from_budget_file_and_mapping(tmp_path):
    path = tmp_path / "sac.yaml"
    path.write_text(yaml.safe_dump({"steps": 123, "hidden_sizes": [32, 16], "initial_alpha": 0.2}))
    config = resolve_config("sac", "cpu", path)
    assert isinstance(config, SACConfig) and config.steps == 123 and config.hidden_sizes == (32, 16)
    assert config.num_envs == resolve_config("sac", "cpu").num_envs == 16  # the rest from the budget
    assert (
        resolve_config("sac", "paper").actor_lr == 1e-4 and resolve_config("ddpg", "paper").batch_size == 128
    )
    with pytest.raises(UserError, match="unknown field.*stpes"):
        resolve_config("sac", "quick", {"stpes": 3})
    with pytest.raises(UserError, match="unknown budget"):
        resolve_config("sac", "huge")
    path.write_text("budget: paper\nsteps: 7\n")  # a file may name its base budget
    assert (
        resolve_config("sac", "quick", path).batch_size == 64
        and resolve_config("sac", "quick", path).steps == 7
    )
    with pytest.raises(UserError, match="whole number"):
        resolve_config("sac", "quick", {"num_envs": 0})


# ---------------------------------------------------------------------------------------- end to end
def test_train_agent_then_evaluate_run_on_the_embedded_data(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(tmp_path / "cache"))
    run_dir = train_agent(
        "sac",
        "sp500",
        budget="quick",
        steps=60,
        seed=1,
        out_dir=tmp_path / "run",
        train_start="2015-01-01",
        train_end="2018-12-31",
        progress=False,
    )
    run = json.loads((run_dir / "run.json").read_text())
    assert (
        run["train"] == ["2015-01-02", "2018-12-31"] and run["sim"]["hmax"] > 100 and run["finetune"] is None
    )
    assert Agent.load(run_dir / "agent.pt").updates == 10  # 60 steps, random actions for the first 50

    document = evaluate_run(run_dir, "sp500", "2019-01-01", "2019-12-31")
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(json.dumps(document))
    with_costs, without = document["strategies"]["sac"], document["strategies_no_costs"]["sac"]
    assert set(document["strategies"]) == {"sac", "equal-weight"} and with_costs["total_costs"] > 0
    assert without["total_costs"] == 0 and without["CR"] >= with_costs["CR"]
    assert document["start"] == "2019-01-02" and document["end"] == "2019-12-31"
    with pytest.raises(UserError, match="learned from days up to 2018-12-31"):
        evaluate_run(run_dir, "sp500", "2018-06-01", "2019-12-31")


def test_agents_are_runner_methods_that_train_on_the_window(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(tmp_path / "cache"))
    method = make_method("ddpg", {"budget": "quick", "steps": 60, "initial_cash": 1e4, "hmax": 100})
    assert (method.initial_cash, method.hmax) == (1e4, 100)
    assert make_method("sac").hmax is None  # chosen from the training data when the policy is built
    assert method.deterministic is False and method.config.steps == 60
    with pytest.raises(UserError, match="unknown field"):
        make_method("sac", {"budget": "quick", "learning_rate": 1})
    panel, _ = trending_market()  # the method builds its own (raw-feature) states on the training window
    window = Window(
        "w",
        train_start=panel.dates[0],
        train_end=panel.dates[TRAIN_END],
        test_start=panel.dates[TEST[0]],
        test_end=panel.dates[TEST[1]],
        finetune_start=panel.dates[200],
        finetune_end=panel.dates[TRAIN_END],
    )
    policy = method.build_policy(panel, window, seed=0, work_dir=tmp_path / "work")
    assert (tmp_path / "work" / "fit" / "checkpoint.pt").exists() and (
        tmp_path / "work" / "finetune" / "checkpoint.pt"
    ).exists()
    result = held_out_backtest(policy, panel)
    assert result.name == "ddpg" and np.isfinite(result.values).all()
    assert policy.hmax == 100 and result.config["hmax"] == 100  # the backtest trades the policy's hmax
    default = make_method("sac", {"budget": "quick", "steps": 30, "initial_cash": 1e4})
    chosen = default.build_policy(panel, window, seed=0, work_dir=tmp_path / "work-default")
    expected = default_hmax(panel, window.train_start, window.train_end, 1e4)
    assert chosen.hmax == expected and held_out_backtest(chosen, panel).config["hmax"] == expected
