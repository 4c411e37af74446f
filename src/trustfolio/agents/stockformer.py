"""StockFormer (Gao et al. 2023): SAC on the three frozen encoder branches' states.

The agent is `SACAgent` unchanged; what makes it StockFormer is its market state,

    h[t] = [h_relat ‖ h_long ‖ h_short]   (per stock, 3 x out_dim columns)

from `trustfolio.encoders.encode_market(kind="stockformer")`: the relational masked autoencoder and
the 5-day / 1-day return predictors, pretrained on the training window only (early-stopped on its
last part), frozen, and applied to the whole timeline in one cached pass (paper-notes.md, MetaTrader
§ "Encoders"). Row t depends on data up to the close of t only.

The encoder is part of the agent's config (`encoder_budget`, `encoder_kind`, `encoder`), so a saved
agent knows which states it was trained on, and `StockFormerAgent.market_states(panel, start, end, config)`
rebuilds them for evaluation. The encoder's own seed is fixed by its config (default 0), not by the
agent's seed: like the paper's pretrained StockFormer, one frozen encoder serves every agent seed,
and its cache is shared by them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from trustfolio.agents.off_policy import with_paper_settings
from trustfolio.agents.sac import PAPER_SAC, SACAgent, SACConfig
from trustfolio.data.features import MarketStates
from trustfolio.data.panel import Panel
from trustfolio.encoders import EncoderConfig, encode_market
from trustfolio.errors import UserError


def encoder_config(budget: str, kind: str, overrides: dict[str, Any], where: str) -> EncoderConfig:
    """`EncoderConfig.preset(budget, kind)` with the fields of `overrides`; a `UserError` names a bad field.

    `where` says whose setting it is (e.g. ``"stockformer: encoder"``) in the message.
    """
    if not isinstance(overrides, dict):
        raise UserError(f"{where}: expected a mapping of encoder fields, got {overrides!r}")
    known = {f.name for f in fields(EncoderConfig)} - {"kind"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(
            f"{where}: unknown encoder field(s) {', '.join(unknown)} (the kind is set separately); "
            f"EncoderConfig has {', '.join(sorted(known))}"
        )
    try:
        return EncoderConfig.preset(budget, kind, **overrides)
    except TypeError as exc:  # e.g. a string where a number belongs
        raise UserError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class StockFormerConfig(SACConfig):
    """SAC's config plus the encoder its states come from.

    `encoder_budget` picks `EncoderConfig.preset` (``quick``: a tiny transformer, seconds; ``cpu``: the
    release's sizes with a CPU-sized pretraining schedule; ``paper``: the release's schedule), and
    `encoder` overrides single fields of it (e.g. ``{"out_dim": 16}``).
    """

    encoder_budget: str = "quick"
    encoder_kind: str = "stockformer"  # "light": the MLP encoder with the same three branches
    encoder: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "encoder", dict(self.encoder))  # a private copy; stays JSON-like
        self.encoder_config()  # a bad budget, kind or field fails when the config is made

    def encoder_config(self) -> EncoderConfig:
        return encoder_config(self.encoder_budget, self.encoder_kind, self.encoder, "stockformer: encoder")


class StockFormerAgent(SACAgent):
    """SAC on the StockFormer encoder's states (same networks, losses and updates as `SACAgent`)."""

    name = "stockformer"
    config_class = StockFormerConfig
    # The encoder follows the budget: quick = a tiny transformer, cpu = the release's sizes with a
    # CPU-sized pretraining schedule, paper = the release's schedule (`EncoderConfig.preset`).
    budgets = with_paper_settings(PAPER_SAC, encoder_budget=lambda budget: budget)

    @classmethod
    def market_states(cls, panel: Panel, train_start: Any, train_end: Any, config: StockFormerConfig,
                      **options: Any) -> MarketStates:  # fmt: skip
        """The StockFormer market states `h[T, N, 3 * out_dim]` of `panel`, columns ``relat:k``,
        ``long:k``, ``short:k``; the encoder is pretrained on ``[train_start, train_end]`` only (cached;
        `options`: ``cache_dir`` (default ``<cache_root>/encoders``), ``progress``). Days before the
        encoder's `lookback` have all-zero states."""
        return encode_market(panel, config.encoder_config(), train_start=train_start, train_end=train_end,
                             **options)  # fmt: skip


__all__ = ["StockFormerAgent", "StockFormerConfig", "encoder_config"]
