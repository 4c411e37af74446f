"""The training harness's checkpoints capture any state — lists and dicts of modules, optimizers,
tensors and generators, as a population of policies has — and restore it exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from test_agents_sac import SIM, TRAIN_END, trending_market
from trustfolio.agents.base import Agent, AgentConfig, AgentData
from trustfolio.agents.harness import TrainingRun, capture, restore
from trustfolio.errors import UserError

POPULATION = 16


def population(seed: int):
    torch.manual_seed(seed)
    policies = [nn.Linear(4, 2) for _ in range(POPULATION)]
    return {
        "policies": policies,
        "optimizers": [torch.optim.Adam(p.parameters(), lr=1e-2) for p in policies],
        "temperature": torch.tensor(0.5),
        "scores": {"best": torch.zeros(3), "history": [torch.ones(2), torch.full((2,), 3.0)]},
        "torch_rng": torch.Generator().manual_seed(seed),
        "numpy_rng": np.random.default_rng(seed),
    }


def train_steps(state, steps: int) -> list[float]:
    """A few Adam steps of every policy on data drawn from the state's own generators."""
    losses = []
    for _ in range(steps):
        x = torch.randn(8, 4, generator=state["torch_rng"])
        target = torch.from_numpy(state["numpy_rng"].normal(size=(8, 2))).float()
        for policy, optimizer in zip(state["policies"], state["optimizers"], strict=True):
            loss = (policy(x) - target).square().mean() * state["temperature"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        state["temperature"].mul_(0.99)
        state["scores"]["best"] += 1
    return losses


def test_a_population_with_its_optimizers_resumes_bit_for_bit():
    state = population(seed=0)
    train_steps(state, 3)
    saved = capture(state)
    uninterrupted = train_steps(state, 4)

    other = population(seed=1)  # other weights, optimizer moments and generators: all overwritten
    restore(other, saved)
    assert train_steps(other, 4) == uninterrupted
    for a, b in zip(state["policies"], other["policies"], strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert torch.equal(state["scores"]["best"], other["scores"]["best"])


class Population(Agent):
    """An agent whose learned state is a list of policies and a list of their optimizers."""

    name = "population-test"
    budgets = {"quick": {}}

    def build(self) -> None:
        self.policies = [nn.Linear(self.obs_dim, self.n_stocks) for _ in range(POPULATION)]
        self.optimizers = [torch.optim.Adam(p.parameters(), lr=1e-3) for p in self.policies]
        self.weights = torch.full((POPULATION,), 1.0 / POPULATION)

    def act(self, obs, *, deterministic):
        return torch.zeros(obs.shape[0], self.n_stocks)

    def learn(self, data, *, phase, steps, seed, out_dir, resume=True, progress=True):
        run = TrainingRun(self, data, phase=phase, seed=seed, steps=steps, out_dir=out_dir, progress=progress)
        run.resume({"agent": self}, resume=resume)
        with run:
            for step in run:
                x = torch.randn(4, self.obs_dim, generator=self.generator)
                for policy, optimizer in zip(self.policies, self.optimizers, strict=True):
                    optimizer.zero_grad()
                    policy(x).square().mean().backward()
                    optimizer.step()
                self.weights = torch.softmax(torch.randn(POPULATION, generator=self.generator), 0)
                run.end_step(step, row={"updates": step})
        return run.summary(transitions=0, updates=steps)


def test_an_agent_with_a_population_saves_loads_and_refuses_another_runs_checkpoint(tmp_path):
    panel, states = trending_market()
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    config = AgentConfig(steps=6, checkpoint_every=3, log_every=3)
    agent = Population(panel.N, 5, config, seed=0)
    agent.fit(data, out_dir=tmp_path / "fit", progress=False)
    agent.save(tmp_path / "agent.pt")
    loaded = Agent.load(tmp_path / "agent.pt")

    assert len(agent.state_dict()["policies"]) == len(agent.state_dict()["optimizers"]) == POPULATION
    for a, b in zip(agent.policies, loaded.policies, strict=True):
        assert torch.equal(a.weight, b.weight)
    assert loaded.optimizers[0].state_dict()["state"][0]["step"] == 6
    assert torch.equal(agent.weights, loaded.weights)
    with pytest.raises(UserError, match="belongs to a different run.*--fresh"):
        Population(panel.N, 5, config, seed=1).fit(data, out_dir=tmp_path / "fit", progress=False)
