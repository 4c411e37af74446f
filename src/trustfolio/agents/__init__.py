"""Learning agents: one readable file per algorithm on a shared off-policy training loop.

- `base`: `Agent` (fit / finetune / policy / save / load), `AgentConfig`, `AgentData`, `TrainSummary`,
  `AgentPolicy` (a trained agent as a backtest `Policy`).
- `training`: `ReplayBuffer` and `train_off_policy` (batched rollouts on the fixed market path,
  evaluation callback, checkpoints and exact resume, CSV/TensorBoard logs, progress bar).
- `networks`: MLP actors and critics; `sac` (FinRL-SAC), `ddpg` (FinRL-DDPG).
- `registry`: `AGENTS`, budgets (quick / cpu / paper), `train_agent`, `evaluate_run`, and the agents
  as runner methods ("sac", "ddpg").
"""

from trustfolio.agents.base import Agent, AgentConfig, AgentData, AgentPolicy, TrainSummary
from trustfolio.agents.ddpg import DDPGAgent, DDPGConfig
from trustfolio.agents.registry import (
    AGENTS,
    BUDGETS,
    evaluate_run,
    register_agent,
    resolve_config,
    train_agent,
)
from trustfolio.agents.sac import SACAgent, SACConfig
from trustfolio.agents.training import Batch, ReplayBuffer, train_off_policy

__all__ = [
    "AGENTS",
    "BUDGETS",
    "Agent",
    "AgentConfig",
    "AgentData",
    "AgentPolicy",
    "Batch",
    "DDPGAgent",
    "DDPGConfig",
    "ReplayBuffer",
    "SACAgent",
    "SACConfig",
    "TrainSummary",
    "evaluate_run",
    "register_agent",
    "resolve_config",
    "train_agent",
    "train_off_policy",
]
