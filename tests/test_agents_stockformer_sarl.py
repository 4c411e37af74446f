"""StockFormer (SAC on the frozen encoder's states) and SARL (SAC on raw features ‖ predicted movement):
their state builders, learning on a trending market, determinism, saving, and SARL's look-ahead check.

The market is `trending_market` of the SAC tests (stock 2 drifts up 0.4% a day); states are built
by the agents' own builders with tiny encoders fitted on the training days 0..299 only, and the
agents are judged on the held-out days 300..399. Torch runs on one thread here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from test_agents_sac import SIM, TEST, TRAIN_END, held_out_backtest, tiny_config, trending_market
from trustfolio.agent_runs import evaluate_run, train_agent
from trustfolio.agents.base import Agent, AgentData
from trustfolio.agents.sarl import (
    PREDICTION_COLUMNS,
    SARLAgent,
    SARLConfig,
    augment_with_predictions,
)
from trustfolio.agents.stockformer import StockFormerAgent, StockFormerConfig
from trustfolio.data.features import STATE_COLUMNS, MarketStates, build_features
from trustfolio.data.panel import Panel
from trustfolio.encoders import EncoderConfig, encode
from trustfolio.errors import UserError
from trustfolio.methods import make_method
from trustfolio.strategies import make_strategy

TRENDING, LOOKBACK = 2, 8
TINY_ENCODER = dict(lookback=LOOKBACK, out_dim=4, max_epochs=2, steps_per_epoch=10, batch_size=16,
                    validation_days=8)  # fmt: skip
AGENTS = {  # name -> (agent class, config class, field holding the encoder overrides, state builder)
    "stockformer": (StockFormerAgent, StockFormerConfig, "encoder", StockFormerAgent.market_states),
    "sarl": (SARLAgent, SARLConfig, "predictor", SARLAgent.market_states),
}


def config_of(name: str, **changes):
    _, config_class, encoder_field, _ = AGENTS[name]
    return tiny_config(config_class, **{encoder_field: TINY_ENCODER, **changes})


@pytest.fixture(scope="module")
def panel() -> Panel:
    return trending_market(TRENDING)[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("encoder-cache")


@pytest.fixture(scope="module")
def states(panel, cache) -> dict[str, MarketStates]:
    """Both agents' states of `panel`, encoders fitted on days 0..TRAIN_END (cached in `cache`)."""
    return {
        name: builder(
            panel, panel.dates[0], panel.dates[TRAIN_END], config_of(name), cache_dir=cache, progress=False
        )
        for name, (_, _, _, builder) in AGENTS.items()
    }


def fit(name: str, panel: Panel, states: MarketStates, out_dir, seed: int = 0, **changes) -> Agent:
    agent_class = AGENTS[name][0]
    agent = agent_class(panel.N, states.h.shape[2], config_of(name, **changes), seed=seed)
    agent.fit(AgentData(panel, states, 0, TRAIN_END, SIM), out_dir=out_dir, progress=False)
    return agent


# ---------------------------------------------------------------------------------------- states
def test_stockformer_states_are_the_three_branches_zero_before_the_lookback(panel, states):
    h = states["stockformer"]
    assert h.h.shape == (panel.T, panel.N, 3 * 4) and h.h.dtype == np.float32
    assert h.columns == tuple(f"{b}:{k}" for b in ("relat", "long", "short") for k in range(4))
    assert np.isfinite(h.h).all() and np.array_equal(h.dates, panel.dates)
    assert not h.h[: LOOKBACK - 1].any()  # no full look-back window yet: zero states
    assert (np.abs(h.h[LOOKBACK - 1 :]).sum(axis=(1, 2)) > 0).all()


def test_sarl_states_are_raw_features_and_two_scaled_forecasts(panel, states, cache):
    h = states["sarl"]
    raw = build_features(panel, train_start=panel.dates[0], train_end=panel.dates[TRAIN_END],
                         cache_dir=cache / "features").market_states()  # fmt: skip
    assert h.h.shape == (panel.T, panel.N, len(STATE_COLUMNS) + 2) and h.h.dtype == np.float32
    assert h.columns == (*STATE_COLUMNS, *PREDICTION_COLUMNS) and np.isfinite(h.h).all()
    assert np.array_equal(h.h[..., : len(STATE_COLUMNS)], raw.h)  # FinRL-SAC's state, untouched
    forecasts = h.h[..., len(STATE_COLUMNS) :]
    assert not forecasts[: LOOKBACK - 1].any()  # no forecast without a full window
    # Scaled to unit root mean square over the training days (a little less where ±5 clipped), sign kept.
    rms = np.sqrt(np.mean(forecasts[LOOKBACK - 1 : TRAIN_END + 1].astype(np.float64) ** 2, axis=(0, 1)))
    assert np.all((rms > 0.9) & (rms <= 1.0 + 1e-5)), rms
    encoded = encode(panel, config_of("sarl").predictor_config(), train_start=panel.dates[0],
                     train_end=panel.dates[TRAIN_END], cache_dir=cache, progress=False)  # fmt: skip
    unscaled = np.stack([encoded.short_term, encoded.long_term], axis=-1)[LOOKBACK - 1 :]
    assert np.array_equal(np.sign(forecasts[LOOKBACK - 1 :]), np.sign(unscaled))


def test_augmentation_scales_on_training_days_clips_and_zeroes_missing_forecasts():
    states = MarketStates(h=np.zeros((4, 1, 1), np.float32), columns=("x",), dates=np.arange(4))
    predictions = np.array([np.nan, 3.0, -4.0, 100.0], np.float32).reshape(4, 1, 1)
    out = augment_with_predictions(states, predictions, train_span=(0, 3), clip=2.0)
    # RMS over training days 0..2 (NaN skipped): sqrt((9 + 16) / 2) = 3.5355
    assert out.columns == ("x", "predicted_0") and out.h.dtype == np.float32
    np.testing.assert_allclose(out.h[:, 0, 1], [0.0, 3 / 3.5355339, -4 / 3.5355339, 2.0], rtol=1e-6)
    later = predictions.copy()
    later[3] = -1e6  # a test-period value does not move the training scale
    assert np.array_equal(augment_with_predictions(states, later, (0, 3), 2.0).h[:3], out.h[:3])


def test_bad_encoder_settings_fail_when_the_config_is_made():
    with pytest.raises(UserError, match="unknown encoder field.*d_modle"):
        StockFormerConfig(encoder={"d_modle": 64})
    with pytest.raises(UserError, match="unknown encoder budget"):
        SARLConfig(predictor_budget="huge")
    with pytest.raises(UserError, match="encoder kind"):
        StockFormerConfig(encoder_kind="lstm")


# ---------------------------------------------------------------------------------------- no look-ahead
def with_garbage_after(panel: Panel, t: int, seed: int) -> Panel:
    """`panel` with every price and volume after day t replaced by random (valid) values."""
    rng = np.random.default_rng(seed)
    shape = (panel.T - t - 1, panel.N)
    close = rng.uniform(1.0, 500.0, shape).astype(np.float32)
    fields = {"open": close, "high": close * 1.1, "low": close * 0.9, "close": close,
              "volume": rng.uniform(0, 1e9, shape).astype(np.float32)}  # fmt: skip
    return replace(panel, **{k: np.concatenate([panel.field(k)[: t + 1], v]) for k, v in fields.items()})


@pytest.mark.parametrize("t", [TRAIN_END, TRAIN_END + 45])
def test_sarl_states_up_to_t_ignore_everything_after_t(panel, t, tmp_path):
    config = config_of("sarl", predictor={**TINY_ENCODER, "hidden": 16})  # the light encoder
    window = (panel.dates[0], panel.dates[TRAIN_END])
    reference = SARLAgent.market_states(panel, *window, config, cache_dir=tmp_path, progress=False).h
    spoiled_panel = with_garbage_after(panel, t, seed=t)
    spoiled = SARLAgent.market_states(spoiled_panel, *window, config, cache_dir=tmp_path, progress=False).h
    forecasts = slice(len(STATE_COLUMNS), None)
    assert np.array_equal(spoiled[: t + 1, :, forecasts], reference[: t + 1, :, forecasts])
    assert np.array_equal(spoiled[: t + 1], reference[: t + 1])
    assert not np.array_equal(spoiled[t + 1 :, :, forecasts], reference[t + 1 :, :, forecasts])


# ---------------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("name", list(AGENTS))
def test_agent_learns_to_hold_the_trending_stock_on_held_out_days(name, panel, states, tmp_path):
    agent = fit(name, panel, states[name], tmp_path, steps=300)
    result = held_out_backtest(agent.policy(states[name]), panel)
    equal_weight = held_out_backtest(make_strategy("equal-weight"), panel)
    assert len(result.weights) == TEST[1] - TEST[0] + 1
    assert result.weights[20:, TRENDING].mean() > 0.6  # 1/N = 0.25; after 20 days of buying
    assert result.CR > equal_weight.CR + 0.1 and result.SR > equal_weight.SR


@pytest.mark.parametrize("name", list(AGENTS))
def test_same_seed_gives_identical_metrics_another_seed_does_not(name, panel, states, cache, tmp_path):
    window = (panel.dates[0], panel.dates[TRAIN_END])
    rebuilt = AGENTS[name][3](panel, *window, config_of(name), cache_dir=cache, progress=False)
    assert np.array_equal(rebuilt.h, states[name].h)  # the cached encoder gives the same states
    metrics = []
    for k, seed in enumerate((5, 5, 6)):
        agent = fit(name, panel, states[name], tmp_path / f"run{k}", seed=seed, steps=80, eval_every=40)
        metrics.append(held_out_backtest(agent.policy(states[name]), panel).metrics())
    assert metrics[0] == metrics[1] and metrics[0] != metrics[2]


def test_saved_agents_load_as_their_own_class_with_their_encoder_settings(panel, states, tmp_path):
    for name, (agent_class, _, encoder_field, _) in AGENTS.items():
        agent = fit(name, panel, states[name], tmp_path / name, steps=60, eval_every=0)
        agent.save(tmp_path / f"{name}.pt")
        assert torch.load(tmp_path / f"{name}.pt", weights_only=True)["agent"] == name
        loaded = Agent.load(tmp_path / f"{name}.pt")
        assert type(loaded) is agent_class and loaded.config == agent.config
        assert getattr(loaded.config, encoder_field) == TINY_ENCODER
        obs = torch.randn(3, agent.obs_dim)
        assert torch.equal(loaded.act(obs, deterministic=True), agent.act(obs, deterministic=True))


# ---------------------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", list(AGENTS))
def test_train_agent_and_evaluate_run_build_the_agents_own_states(name, panel, states, cache, monkeypatch,
                                                                   tmp_path):  # fmt: skip
    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(cache))  # the fixture's encoders are reused
    encoder_field = AGENTS[name][2]
    run_dir = train_agent(name, panel, config={encoder_field: TINY_ENCODER}, budget="quick", steps=60,
                          out_dir=tmp_path, train_start=panel.dates[0], train_end=panel.dates[TRAIN_END],
                          initial_cash=SIM.initial_cash, hmax=SIM.hmax, progress=False)  # fmt: skip
    agent = Agent.load(run_dir / "agent.pt")
    assert type(agent) is AGENTS[name][0] and agent.n_features == states[name].h.shape[2]
    document = evaluate_run(run_dir, panel, panel.dates[TEST[0]], panel.dates[TEST[1]])
    assert set(document["strategies"]) == {name, "equal-weight"}
    assert np.isfinite(document["strategies"][name]["CR"])
    # The cpu budget: release-size StockFormer; SARL's light predictor on the full release schedule.
    method = make_method(name, {"budget": "cpu"})
    assert isinstance(method.config, AGENTS[name][1]) and method.config.hidden_sizes == (256, 256)
    expected = {
        "stockformer": EncoderConfig.preset("cpu", "stockformer"),
        "sarl": EncoderConfig.preset("paper", "light"),
    }
    encoder = method.config.encoder_config() if name == "stockformer" else method.config.predictor_config()
    assert encoder == expected[name]
