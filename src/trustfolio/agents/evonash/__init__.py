"""EvoNash-MARL (arXiv 2604.10911), the reference implementation's building blocks (docs/evonash.md).

- `config`: `EvoNashConfig`, every switch with the paper's values as defaults;
- `features`: trailing features and regime labels (§III-C, eq. 1, 3-4);
- `population`: K linear-tanh agents with regime biases and a risk head (eq. 5-9);
- `pnl`: trading PnL with execution penalties (eq. 10) and the §III-E overlays;
- `game`: payoff matrix, multiplicative-weights meta-strategy, Nash gap, ensemble signal (eq. 11-14);
- `fitness`: utility, violation, fitness, diversity (eq. 15-18) and the evolution operators.

The agent itself (league best responses, signal modules, execution scale, selection, ``learn``) is
not built yet; nothing here is registered as an agent.
"""
