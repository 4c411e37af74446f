"""Market-state encoders: StockFormer's three pretrained, frozen branches (and a light MLP version).

```python
from trustfolio.encoders import EncoderConfig, encode_market, long_term_predictions
states = encode_market(panel, EncoderConfig(kind="stockformer"),
                       train_start="2011-01-17", train_end="2018-12-31")   # h[T, N, 96], cached
```

The market state of MetaTrader's eq. 1 is `h_t = [h_relat, h_long, h_short]`, each `N x D`:
- relational: a masked autoencoder over the stocks of day t, each a row `[covariance row ‖ 8
  indicators]`; it learns to reconstruct the indicators of a random half of the stocks;
- long-term / short-term: predictors of the 5-day / 1-day forward return from each stock's last
  `lookback` (60) days of features.

Decisions (the paper does not give them; `EncoderConfig` makes each an option):
- D = `out_dim` = 32 per branch: a linear bottleneck from the branch's d_model-wide output (the
  release feeds d_model = 128 per branch to its agent); the task head reads only the bottleneck, so
  the state holds what the task needed. 3 x 32 = 96 numbers per stock, 8,448 for 88 stocks — an input
  an MLP actor/critic handles.
- Inputs (`inputs.py`): 13 train-normalized feature columns + 5 scale-free candle features per day for
  the predictors; covariance rows divided by the training window's mean variance.
- Labels are standardized by their training std (a loss scale; predictions are reported as returns);
  no training or validation label crosses the training end.
- Early stopping on the last `validation_fraction` (10 %) of the training window, `patience` 5.

Modules: `config` (EncoderConfig), `inputs` (what the encoders read), `stockformer` and `light` (the
networks), `pretrain` (fitting, early stopping, save/load), `market` (encoding, caching, API). The
config is imported at once (it needs no torch); the rest on first use.
"""

from trustfolio.encoders.config import BRANCHES, EncoderConfig
from trustfolio.lazy import lazy_attributes

_LAZY = {
    "TEMPORAL_COLUMNS": "inputs",
    "EncoderInputs": "inputs",
    "build_inputs": "inputs",
    "EncodedMarket": "market",
    "compute_states": "market",
    "encode": "market",
    "encode_days": "market",
    "encode_market": "market",
    "long_term_predictions": "market",
    "pretrained_encoder": "market",
    "short_term_predictions": "market",
    "state_columns": "market",
    "FittedEncoder": "pretrain",
    "fit_encoder": "pretrain",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "BRANCHES",
    "TEMPORAL_COLUMNS",
    "EncodedMarket",
    "EncoderConfig",
    "EncoderInputs",
    "FittedEncoder",
    "build_inputs",
    "compute_states",
    "encode",
    "encode_days",
    "encode_market",
    "fit_encoder",
    "long_term_predictions",
    "pretrained_encoder",
    "short_term_predictions",
    "state_columns",
]
