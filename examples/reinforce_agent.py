"""A complete trustfolio agent: REINFORCE on target weights (docs/architecture.md walks through it)."""

from dataclasses import dataclass, replace

import numpy as np
import torch

from trustfolio.agents.base import Agent, AgentConfig
from trustfolio.agents.harness import PHASE_IDS, TrainingRun
from trustfolio.agents.off_policy import market_rows
from trustfolio.agents.registry import register_agent
from trustfolio.market.rollout import observe
from trustfolio.market.simulator import Simulator


@dataclass(frozen=True)
class ReinforceConfig(AgentConfig):
    hidden: int = 32
    lr: float = 3e-3
    num_envs: int = 16  # episodes per step, traded at once
    episode_length: int = 20
    noise: float = 0.5  # std of the Gaussian on the logits


def reinforce_loss(log_probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """-E[Σ_t log π(a_t|s_t) G_t], G_t the return to go, minus its batch mean as a baseline ([L, B])."""
    to_go = rewards.flip(0).cumsum(0).flip(0)
    return -(log_probs * (to_go - to_go.mean(1, keepdim=True))).sum(0).mean()


class ReinforceAgent(Agent):
    name = "reinforce"
    config_class = ReinforceConfig
    budgets = {"quick": dict(steps=60, checkpoint_every=20, log_every=10)}
    order_mode = "weights"  # the simulator rebalances to these weights; 1 - their sum stays in cash
    log_keys = ("loss",)

    def build(self) -> None:
        self.net = torch.nn.Sequential(torch.nn.Linear(self.obs_dim, self.config.hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(self.config.hidden, self.n_stocks + 1)).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.lr)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights (softmax of Gaussian logits, cash last) and the logits' log-probability."""
        normal = torch.distributions.Normal(self.net(obs), self.config.noise)
        logits = normal.mean + self.config.noise * torch.randn(normal.mean.shape, generator=self.generator)
        return logits.softmax(-1)[:, :-1].detach(), normal.log_prob(logits.detach()).sum(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, *, deterministic: bool) -> torch.Tensor:
        return self.net(obs).softmax(-1)[:, :-1] if deterministic else self.sample(obs)[0]

    def learn(self, data, *, phase, steps, seed, out_dir, resume=True, progress=True):
        c = self.config
        market, rng = market_rows(data, self.device), np.random.default_rng([seed, PHASE_IDS[phase]])
        sim_config = replace(data.sim, order_mode="weights", round_lots=False, reward_scale=100.0)  # in %
        sim = Simulator(data.panel, sim_config, device=self.device)
        run = TrainingRun(self, data, phase=phase, seed=seed, steps=steps, out_dir=out_dir, progress=progress)
        run.resume({"agent": self, "rng": rng}, resume=resume)  # a checkpoint of this run: continue it
        self.trained_with = self.execution_facts(data)
        with run:
            for step in run:  # one step: a batch of episodes from random days, then one gradient step
                starts = torch.from_numpy(rng.integers(data.start, data.end - c.episode_length + 1, size=c.num_envs))
                sim.reset(start=starts, end=starts + c.episode_length)
                log_probs, rewards = [], []
                for _ in range(c.episode_length):
                    weights, log_prob = self.sample(observe(sim, market, data.sim.initial_cash))
                    log_probs.append(log_prob)
                    rewards.append(sim.step(weights).reward.float())
                loss = reinforce_loss(torch.stack(log_probs), torch.stack(rewards))
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.updates += 1
                run.end_step(step, row={"updates": self.updates, "loss": loss.item()})
        return run.summary(transitions=steps * c.num_envs * c.episode_length, updates=self.updates)


register_agent("reinforce", ReinforceAgent, "REINFORCE on target weights (the docs' example agent)")
