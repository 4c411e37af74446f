"""Filling share orders: the arithmetic every execution shares.

Given signed share orders (`+` buy, `-` sell) and a fill price per stock, `execute_orders` applies
the simulator's rules: sells first, capped at the holdings (no shorting); buys scaled down together
so that they and their costs fit in the cash (no borrowing); costs proportional to the traded value
on each side; quantities optionally floored to whole lots. `target_weights_to_orders` turns target
weights into the share orders that reach them net of costs. Where the fill price comes from is the
`Execution` step's business (`trustfolio.market.execution`).
"""

from __future__ import annotations

import functools

import torch

# Fixed-point iterations that net the rebalancing costs out of a target-weights order; the error
# shrinks by a factor `cost_rate` per iteration (1e-3 at 10 bps), so 4 reach float64 rounding.
_COST_NETTING_ITERATIONS = 4


def execute_orders(
    cash: torch.Tensor,
    holdings: torch.Tensor,
    share_orders: torch.Tensor,
    price: torch.Tensor,
    cost_rate: float,
    lot_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Execute signed share orders (`+` buy, `-` sell) of B portfolios at `price`.

    Sells go first and are capped at the holdings (no shorting). Buys are then scaled down, all by
    the same factor within a portfolio, so that their value plus costs fits in the cash including
    the sale proceeds net of their costs (no borrowing). With `lot_size`, quantities are floored
    toward zero to whole lots after capping and after scaling, so flooring never over-sells or
    over-spends.

    Shapes: `cash [B]`, `holdings [B,N]`, `share_orders [B,N]`, `price [B,N]` or `[N]`.
    Returns `(cash, holdings, costs, traded_value)`, with `costs == cost_rate * traded_value` and
    `traded_value == sum |shares traded| * price`.
    """
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in (cash, holdings, share_orders, price)))
    work = OrderScratch(holdings.shape, dtype, holdings.device, cost_rate)
    work.minus_trades.copy_(share_orders).neg_()
    return execute_negated_orders(work, cash, holdings, price, lot_size)


class OrderScratch:
    """Working tensors for executing orders of one shape `[B, N]` at one cost rate, reused from
    step to step so that a step allocates only the tensors it returns.

    The order book is kept *negated* (`minus_trades = -trades`: positive for sales): then the sell
    cap is one `minimum(-orders, holdings)`, with no `-holdings` to compute. IEEE rounding is
    symmetric in the sign, so every product and sum below is exactly the negation of the plain one.
    `minus_trades` and `minus_buys` are stacked so that one multiply and one sum price both.
    Constants are 0-dim tensors: a Python float in an arithmetic op costs a tensor wrap (~2 us).
    """

    def __init__(self, shape: torch.Size, dtype: torch.dtype, device: torch.device, cost_rate: float) -> None:
        self.shape = tuple(shape)
        self.cost_rate = cost_rate
        self.signed = torch.empty((2, *shape), dtype=dtype, device=device)
        self.minus_trades, self.minus_buys = self.signed.unbind(0)
        self.products = torch.empty_like(self.signed)
        self.sums = torch.empty((2, *shape[:-1]), dtype=dtype, device=device)
        # sum(-trades * price) and sum(-buys * price) = -(value bought)
        self.minus_trade_value, self.minus_buy_value = self.sums.unbind(0)
        self.scale_minus_one = torch.empty((*shape[:-1], 1), dtype=dtype, device=device)
        self.scale_minus_one_flat = self.scale_minus_one.view(shape[:-1])
        self.tiny = torch.finfo(dtype).tiny
        self.one = torch.tensor(1.0, dtype=dtype, device=device)
        self.cost_rate_t = torch.tensor(cost_rate, dtype=dtype, device=device)
        self.minus_buy_cost_factor = torch.tensor(-(1.0 + cost_rate), dtype=dtype, device=device)


def execute_negated_orders(
    work: OrderScratch,
    cash: torch.Tensor,
    holdings: torch.Tensor,
    price: torch.Tensor,
    lot_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`execute_orders` on the negated orders already written in `work.minus_trades`."""
    minus_trades, minus_buys, cost_rate = work.minus_trades, work.minus_buys, work.cost_rate
    # Sells capped at the holdings: a sale above the holdings becomes the holdings.
    torch.minimum(minus_trades, holdings, out=minus_trades)
    if lot_size is not None:
        _truncate_to_lots_(minus_trades, lot_size)
    torch.clamp(minus_trades, max=0.0, out=minus_buys)
    torch.mul(work.signed, price, out=work.products)
    torch.sum(work.products, -1, out=work.sums)
    # sells = buys - trades; clamp: with tiny sells, rounding could make it a hair negative
    sell_value = torch.sub(work.minus_trade_value, work.minus_buy_value).clamp_min_(0.0)

    # Buys plus their costs must fit in the cash after the sales (net of the sales' costs).
    cash_after_sales = torch.add(cash, sell_value, alpha=1.0 - cost_rate)
    buy_cost = torch.mul(work.minus_buy_value, work.minus_buy_cost_factor).clamp_min_(work.tiny)
    # scale = min(1, cash / cost); the tiny floor turns 0/0 (no buys, no cash) into 0/tiny = 0.
    scale = torch.div(cash_after_sales, buy_cost, out=buy_cost).clamp_max_(1.0)
    # Shrink the buys only: trades + buys * (scale - 1) leaves the sells (where buys == 0) exact.
    torch.sub(scale, work.one, out=work.scale_minus_one_flat)
    minus_trades.addcmul_(minus_buys, work.scale_minus_one)
    if lot_size is not None:
        _truncate_to_lots_(minus_trades, lot_size)
        minus_buy_value = torch.mul(minus_trades, price, out=work.products[0]).clamp_max_(0.0).sum(-1)
    else:
        minus_buy_value = work.minus_buy_value.mul_(scale)

    traded_value = sell_value.sub_(minus_buy_value)  # sell value no longer needed: reuse it
    costs = torch.mul(traded_value, work.cost_rate_t)
    # clamp: `cash / buy_cost * buy_cost` may exceed the cash by one rounding error.
    new_cash = cash_after_sales.add_(minus_buy_value, alpha=1.0 + cost_rate).clamp_min_(0.0)
    return new_cash, torch.sub(holdings, minus_trades), costs, traded_value


def target_weights_to_orders(
    cash: torch.Tensor,
    holdings: torch.Tensor,
    weights: torch.Tensor,
    price: torch.Tensor,
    cost_rate: float,
) -> torch.Tensor:
    """Signed share orders that move each portfolio to the target `weights` [B,N] at `price`.

    Weights are fractions of the portfolio value *after* paying the costs of this rebalance (the
    rest, `1 - sum(weights)`, stays in cash), so the orders are affordable: the net value solves
    `V' = V - cost_rate * sum_i |w_i V' - h_i p_i|`, found by fixed-point iteration.
    """
    position_value = holdings * price
    gross_value = cash + position_value.sum(-1)
    net_value = gross_value
    if cost_rate > 0:
        for _ in range(_COST_NETTING_ITERATIONS):
            turnover = (weights * net_value.unsqueeze(-1) - position_value).abs().sum(-1)
            net_value = gross_value - cost_rate * turnover
    target_shares = weights * net_value.unsqueeze(-1) / price
    return target_shares - holdings


def _truncate_to_lots_(shares: torch.Tensor, lot_size: int) -> torch.Tensor:
    """Round signed share quantities toward zero to whole lots (never more than asked), in place."""
    return shares.div_(lot_size).trunc_().mul_(lot_size)


__all__ = ["OrderScratch", "execute_negated_orders", "execute_orders", "target_weights_to_orders"]
