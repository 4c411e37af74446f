"""Learning agents: layers like Stable-Baselines3, one readable file per algorithm like CleanRL.

- `base`: the minimal contract — `Agent` (learn / fit / finetune / policy / save / load),
  `AgentConfig`, `AgentData`, `TrainSummary`, `AgentPolicy` (a trained agent as a backtest `Policy`);
- `harness`: the one training harness every loop runs in (progress, logs, evaluation callback,
  atomic checkpoints of any state, run identity, exact resume);
- `off_policy`: `OffPolicyAgent` / `OffPolicyConfig` and the off-policy loop; `replay`: `Batch`,
  `ReplayBuffer`; `networks`: MLP actors and critics;
- algorithms: `sac`, `ddpg`, `cql`, `iql`, `stockformer`, `sarl`, `metatrader` (+ `metatrader_training`,
  `subsets`);
- `registry`: agents by name and their configs by budget (imports no agent until asked).

Training runs and agents as runner methods are in `trustfolio.agent_runs`; how to add an agent is
in docs/architecture.md. Names below are imported on first use, so ``import trustfolio.agents.registry``
stays light.
"""

from __future__ import annotations

from trustfolio.lazy import lazy_attributes

_EXPORTS = {
    "Agent": "base",
    "AgentConfig": "base",
    "AgentData": "base",
    "AgentPolicy": "base",
    "TrainSummary": "base",
    "OffPolicyAgent": "off_policy",
    "OffPolicyConfig": "off_policy",
    "Batch": "replay",
    "ReplayBuffer": "replay",
    "TrainingRun": "harness",
    "SACAgent": "sac",
    "SACConfig": "sac",
    "DDPGAgent": "ddpg",
    "DDPGConfig": "ddpg",
    "AGENTS": "registry",
    "register_agent": "registry",
    "resolve_config": "registry",
}


__getattr__ = lazy_attributes(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
