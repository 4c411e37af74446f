"""Protocols: windows computed by hand on a small business-day calendar, and their validation."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from trustfolio.errors import UserError
from trustfolio.evaluation.protocols import (
    Window,
    offline_split,
    online_adaptation,
    resolve_protocol,
    walk_forward,
    windows_from_config,
)

# Mon 2021-01-04 → Fri 2021-02-26: eight whole weeks, 40 trading days.
DAYS = np.arange("2021-01-04", "2021-02-27", dtype="datetime64[D]")
DAYS = DAYS[np.is_busday(DAYS)]
D = np.datetime64


def spans(window: Window) -> dict[str, tuple[str, str] | None]:
    out = {}
    for which in ("train", "finetune", "validation", "test"):
        start, end = window.span(which)
        out[which] = None if start is None else (str(start), str(end))
    return out


def test_calendar_is_what_the_hand_computations_assume():
    assert len(DAYS) == 40 and str(DAYS[0]) == "2021-01-04" and str(DAYS[-1]) == "2021-02-26"


def test_offline_split_snaps_to_trading_days():
    # 2021-01-02 is a Saturday (→ Mon 01-04), 01-17 a Sunday (→ Fri 01-15), 01-16 a Saturday (→ Mon 01-18).
    (window,) = offline_split(
        train=("2021-01-02", "2021-01-17"),
        finetune=("2021-01-09", "2021-01-17"),
        test=("2021-01-16", "2021-01-31"),
        dates=DAYS,
    )
    assert window.name == "offline"
    assert spans(window) == {
        "train": ("2021-01-04", "2021-01-15"),
        "finetune": ("2021-01-11", "2021-01-15"),
        "validation": None,
        "test": ("2021-01-18", "2021-01-29"),
    }


def test_offline_split_without_dates_keeps_the_dates_given():
    (window,) = offline_split(train=("2010-01-01", "2019-12-31"), test=("2020-01-01", "2022-12-28"))
    assert (window.train_end, window.test_start) == (D("2019-12-31"), D("2020-01-01"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(train=("2021-01-04", "2021-01-18"), test=("2021-01-18", "2021-01-29")), "train ends on 2021-01-18"),
        (dict(train=("2021-01-04", "2021-01-08"), test=("2021-01-11", "2021-01-22"), finetune=("2021-01-04", "2021-01-11")),
         "finetune ends on 2021-01-11"),
        (dict(train=("2021-01-04", "2021-01-08"), test=("2021-01-16", "2021-01-17")), "test: no trading days"),
        (dict(train=("2021-01-15", "2021-01-04"), test=("2021-01-18", "2021-01-29")), "train: starts on 2021-01-15"),
        (dict(train=("2021-01-04", "2021-01-08"), test=("2021-01-18", "2021-01-29"), validation=("2021-01-08", "2021-01-15")),
         "validation starts on 2021-01-08, not after training"),
        (dict(train="2021", test=("2021-01-18", "2021-01-29")), "train: expected [start, end]"),
    ],
)  # fmt: skip
def test_offline_split_rejects_windows_that_would_leak(kwargs, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        offline_split(**kwargs, dates=DAYS)


def test_online_adaptation_finetunes_on_the_days_right_before_each_period():
    windows = online_adaptation(
        train=("2021-01-01", "2021-01-22"),
        periods=[("2021-02-01", "2021-02-12"), ("2021-02-13", "2021-02-26")],
        dates=DAYS,
        finetune_days=5,
    )
    assert [w.name for w in windows] == ["online-1", "online-2"]
    assert spans(windows[0]) == {
        "train": ("2021-01-04", "2021-01-22"),
        "finetune": ("2021-01-25", "2021-01-29"),
        "validation": None,
        "test": ("2021-02-01", "2021-02-12"),
    }
    # The second period finetunes on the last week of the first one (already revealed by then).
    assert spans(windows[1])["finetune"] == ("2021-02-08", "2021-02-12")
    assert spans(windows[1])["test"] == ("2021-02-15", "2021-02-26")
    assert spans(windows[1])["train"] == spans(windows[0])["train"]


def test_online_adaptation_defaults_to_one_calendar_year_of_finetuning():
    (window,) = online_adaptation(
        train=("2021-01-04", "2021-01-08"),
        periods=[("2021-02-01", "2021-02-26")],
        dates=DAYS,
        trading_days_per_year=10,
    )
    assert spans(window)["finetune"] == ("2021-01-18", "2021-01-29")  # the 10 trading days before 02-01


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(periods=[("2021-02-01", "2021-02-12"), ("2021-02-10", "2021-02-26")]),
            "not after the previous period",
        ),
        (
            dict(periods=[("2021-02-01", "2021-02-12")], finetune_days=30),
            "needs 30 trading days before 2021-02-01",
        ),
        (dict(periods=[("2021-01-18", "2021-02-12")]), "train ends on 2021-01-22"),
        (dict(periods=[]), "periods"),
    ],
)
def test_online_adaptation_rejects_bad_periods(kwargs, message):
    with pytest.raises(UserError, match=message):
        online_adaptation(train=("2021-01-04", "2021-01-22"), dates=DAYS, **{"finetune_days": 5, **kwargs})


def test_walk_forward_windows_by_hand():
    windows = walk_forward(DAYS, train=10, test=5, step=5, validation_fraction=0.2)
    assert len(windows) == 6  # (40 - 10 - 5) // 5 + 1
    assert [w.name for w in windows] == [f"wf-00{k}" for k in range(1, 7)]
    # 10 training days: the first 8 fit, the last 2 (20%) validate, then 5 test days.
    assert spans(windows[0]) == {
        "train": ("2021-01-04", "2021-01-13"),
        "finetune": None,
        "validation": ("2021-01-14", "2021-01-15"),
        "test": ("2021-01-18", "2021-01-22"),
    }
    assert spans(windows[1])["train"] == ("2021-01-11", "2021-01-20")  # one step = one week later
    assert spans(windows[-1]) == {
        "train": ("2021-02-08", "2021-02-17"),
        "finetune": None,
        "validation": ("2021-02-18", "2021-02-19"),
        "test": ("2021-02-22", "2021-02-26"),
    }
    for w in windows:  # every span has the asked length in trading days, in order, no overlap
        count = [
            int(np.busday_count(s, e + 1)) for s, e in (w.span("train"), w.span("validation"), w.span("test"))
        ]
        assert count == [8, 2, 5]
        assert w.train_end < w.validation_start <= w.validation_end < w.test_start


def test_walk_forward_options():
    assert spans(walk_forward(DAYS, train=10, test=5, step=5, validation_fraction=0)[0]) == {
        "train": ("2021-01-04", "2021-01-15"),
        "finetune": None,
        "validation": None,
        "test": ("2021-01-18", "2021-01-22"),
    }
    assert len(walk_forward(DAYS, train=10, test=5, step=5, max_windows=2)) == 2
    assert len(walk_forward(DAYS, train=10, test=5, step=5, max_windows=None)) == 6
    assert len(walk_forward(DAYS, train=10, test=5, step=3)) == 9  # (40 - 15) // 3 + 1
    later = walk_forward(DAYS, train=10, test=5, step=5, start="2021-01-16")  # Saturday → from 01-18
    assert len(later) == 4 and str(later[0].train_start) == "2021-01-18"
    ending = walk_forward(DAYS, train=10, test=5, step=5, end="2021-02-10")
    assert len(ending) == 3 and str(ending[-1].test_end) == "2021-02-05"  # 28 days → (28 - 15) // 5 + 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(train=30, test=15), "a window needs 30 \\+ 15 trading days but the data has 40"),
        (dict(train=10, test=5, step=0), "step"),
        (dict(train=10.5), "train"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(max_windows=0), "max_windows"),
    ],
)
def test_walk_forward_rejects_bad_lengths(kwargs, message):
    with pytest.raises(UserError, match=message):
        walk_forward(DAYS, **kwargs)


def test_window_dict_round_trip():
    window = walk_forward(DAYS, train=10, test=5, step=5)[2]
    data = window.to_dict()
    assert data["validation_start"] == "2021-01-28" and data["finetune_start"] is None
    assert Window.from_dict(data) == window


def test_windows_from_config_reads_yaml_values():
    # yaml.safe_load gives datetime.date objects for unquoted dates.
    offline = {
        "kind": "offline",
        "train": [datetime.date(2021, 1, 2), "2021-01-17"],
        "test": ["2021-01-16", "2021-01-31"],
    }
    assert windows_from_config(offline, DAYS) == offline_split(
        train=("2021-01-02", "2021-01-17"), test=("2021-01-16", "2021-01-31"), dates=DAYS
    )
    online = {
        "kind": "online",
        "train": ["2021-01-04", "2021-01-08"],
        "periods": [["2021-02-01", "2021-02-26"]],
    }
    (window,) = windows_from_config(online, DAYS, trading_days_per_year=10)
    assert spans(window)["finetune"] == ("2021-01-18", "2021-01-29")
    wf = windows_from_config({"kind": "walk-forward", "train": 10, "test": 5, "step": 5}, DAYS)
    assert wf == walk_forward(DAYS, train=10, test=5, step=5)


def test_resolve_protocol_fills_defaults_and_names_bad_fields():
    resolved = resolve_protocol({"kind": "walk-forward"})
    assert resolved == {
        "kind": "walk-forward",
        "train": 252,
        "test": 21,
        "step": 21,
        "max_windows": 120,
        "validation_fraction": 0.2,
        "start": None,
        "end": None,
    }
    assert resolve_protocol({"kind": "offline", "train": [datetime.date(2010, 1, 1), "2019-12-31"], "test": ["2020-01-01", "2022-12-28"]})["train"] == ["2010-01-01", "2019-12-31"]  # fmt: skip
    for protocol, message in [
        ({"kind": "sideways"}, "protocol.kind"),
        ({"kind": "offline", "train": ["2010-01-01", "2019-12-31"]}, "protocol.test: required"),
        (
            {"kind": "offline", "train": ["2010-01-01", "2019-12-31"], "test": ["2020-01-01", "x"]},
            "protocol.test",
        ),
        (
            {"kind": "online", "train": ["2010-01-01", "2019-12-31"], "periods": [["2020-01-01"]]},
            "protocol.periods\\[0\\]",
        ),
        ({"kind": "walk-forward", "trian": 252}, "protocol.trian: unknown key"),
        ({"kind": "walk-forward", "step": "21"}, "protocol.step"),
        (["offline"], "protocol: expected a mapping"),
    ]:
        with pytest.raises(UserError, match=message):
            resolve_protocol(protocol)


def test_protocol_dates_must_be_iso():
    with pytest.raises(UserError, match="YYYY-MM-DD"):
        resolve_protocol({"kind": "offline", "train": ["01/04/2019", "2019-12-31"], "test": ["2020-01-02", "2020-06-30"]})
