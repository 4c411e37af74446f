"""Evaluation protocols: which days a method may learn from and which days it is tested on.

A protocol turns a dataset's trading days into a list of `Window`s. Each window says, with inclusive
trading-day boundaries, where a method may fit (``train``), optionally adapt (``finetune``) and
select among candidates (``validation``), and where it is then tested (``test``). Every boundary is
snapped to the dataset's trading days, and every window checks that all learning ends before its
test starts, so no test-period day can decide anything.

- `offline_split`: one window by dates (MetaTrader's offline protocol: train 2011-01-17 → 2018-12-31,
  finetune 2018-01-04 → 2018-12-31, test 2019-04-01 → 2022-04-01).
- `online_adaptation`: consecutive test periods, each preceded by finetuning on the trading days
  right before it (MetaTrader's three yearly periods from 2019-04-01, one year of finetuning each).
- `walk_forward`: rolling windows counted in trading days (EvoNash: 252 train / 21 test / step 21,
  up to 120 windows), the last `validation_fraction` of each training span held out for selection.

`windows_from_config` reads the ``protocol:`` block of an experiment YAML file.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from trustfolio.data.panel import to_day
from trustfolio.errors import UserError

_SPANS = ("train", "finetune", "validation", "test")


@dataclass(frozen=True)
class Window:
    """One train/test split with inclusive trading-day boundaries (``datetime64[D]``).

    Invariants (checked on construction): every span is ordered (start <= end); training,
    finetuning and validation all end before the test starts; validation starts after training ends.
    """

    name: str  # e.g. "offline", "online-1", "wf-007"
    train_start: np.datetime64
    train_end: np.datetime64
    test_start: np.datetime64
    test_end: np.datetime64
    finetune_start: np.datetime64 | None = None
    finetune_end: np.datetime64 | None = None
    validation_start: np.datetime64 | None = None
    validation_end: np.datetime64 | None = None

    def __post_init__(self) -> None:
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, None if value is None else to_day(value))
        for span in _SPANS:
            start, end = self.span(span)
            if (start is None) != (end is None):
                raise UserError(f"window {self.name}: {span} needs both a start and an end")
            if start is not None and start > end:
                raise UserError(f"window {self.name}: {span} starts on {start}, after it ends on {end}")
        for span in ("train", "finetune", "validation"):
            end = self.span(span)[1]
            if end is not None and end >= self.test_start:
                raise UserError(
                    f"window {self.name}: {span} ends on {end}, not before the test starts on "
                    f"{self.test_start}; a method must not learn from test days — end {span} earlier"
                )
        if self.validation_start is not None and self.validation_start <= self.train_end:
            raise UserError(
                f"window {self.name}: validation starts on {self.validation_start}, not after training "
                f"ends on {self.train_end}; validation days must be held out of training"
            )

    def span(self, which: str) -> tuple[np.datetime64 | None, np.datetime64 | None]:
        """``(start, end)`` of ``train``, ``finetune``, ``validation`` or ``test`` (None when absent)."""
        return getattr(self, f"{which}_start"), getattr(self, f"{which}_end")

    def to_dict(self) -> dict[str, str | None]:
        """JSON-ready: ISO dates as text, None for absent spans."""
        return {f.name: None if (v := getattr(self, f.name)) is None else str(v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        """Inverse of `to_dict`."""
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


# ---------------------------------------------------------------------------------------- protocols
def offline_split(*, train, test, finetune=None, validation=None, dates=None, name="offline") -> list[Window]:
    """One window from ``(start, end)`` date pairs; with `dates`, snapped to those trading days
    (a start moves to the next trading day, an end to the previous one)."""

    def snap(span, what):
        start, end = _pair(span, what)
        return (start, end) if dates is None else _snap(_days(dates), start, end, what)

    spans = {"train": snap(train, "train"), "test": snap(test, "test")}
    for what, span in (("finetune", finetune), ("validation", validation)):
        if span is not None:
            spans[what] = snap(span, what)
    return [_window(name, spans)]


def online_adaptation(
    *, train, periods, dates, finetune_days: int | None = None, trading_days_per_year: int = 252
) -> list[Window]:
    """One window per test period (in order, not overlapping), named ``online-1``, ``online-2``, …

    All windows share the training span `train`; each finetunes on the `finetune_days` trading days
    (default: one year, `trading_days_per_year`) immediately before its test period starts — for the
    second period onwards those are days the previous period has already revealed.
    """
    days = _days(dates)
    n_finetune = trading_days_per_year if finetune_days is None else finetune_days
    if not _is_whole(n_finetune) or n_finetune < 1:
        raise UserError(f"finetune_days must be a whole number of trading days >= 1, not {n_finetune!r}")
    train_span = _snap(days, *_pair(train, "train"), "train")
    if not isinstance(periods, list | tuple) or not periods:
        raise UserError("periods: give a list of [start, end] test periods")
    windows: list[Window] = []
    for k, period in enumerate(periods, start=1):
        what = f"periods[{k - 1}]"
        test_span = _snap(days, *_pair(period, what), what)
        if windows and test_span[0] <= windows[-1].test_end:
            raise UserError(
                f"{what}: starts on {test_span[0]}, not after the previous period ends on "
                f"{windows[-1].test_end}; list the periods in order, without overlap"
            )
        first_test = int(np.searchsorted(days, test_span[0]))
        if first_test < n_finetune:
            raise UserError(
                f"{what}: finetuning needs {n_finetune} trading days before {test_span[0]}, but the "
                f"dataset has only {first_test} (it starts on {days[0]}); lower finetune_days"
            )
        finetune_span = (days[first_test - n_finetune], days[first_test - 1])
        windows.append(
            _window(f"online-{k}", {"train": train_span, "finetune": finetune_span, "test": test_span})
        )
    return windows


def walk_forward(
    dates,
    *,
    train: int = 252,
    test: int = 21,
    step: int = 21,
    max_windows: int | None = 120,
    validation_fraction: float = 0.2,
    start=None,
    end=None,
) -> list[Window]:
    """Rolling windows counted in trading days of `dates` (restricted to `[start, end]`).

    Window k (named ``wf-001``, ``wf-002``, …) spans the `train` days starting at day ``k * step``,
    then the next `test` days; the last ``round(train * validation_fraction)`` days of the training
    span become its validation split (0 for none). Only whole test windows are made, at most
    `max_windows` of them (the earliest; None for all that fit).
    """
    _check_walk_forward(train, test, step, max_windows, validation_fraction)
    days = _days(dates)
    if start is not None or end is not None:
        lo = days[0] if start is None else to_day(start)
        hi = days[-1] if end is None else to_day(end)
        days = days[(days >= lo) & (days <= hi)]
    n_validation = int(round(train * validation_fraction))
    n_fit = train - n_validation
    count = (len(days) - train - test) // step + 1 if len(days) >= train + test else 0
    if count < 1:
        raise UserError(
            f"walk-forward: a window needs {train} + {test} trading days but the data has {len(days)} "
            f"between {start or days[:1]} and {end or days[-1:]}; shorten the windows or widen the range"
        )
    if max_windows is not None:
        count = min(count, max_windows)
    windows = []
    for k in range(count):
        first = k * step
        spans = {
            "train": (days[first], days[first + n_fit - 1]),
            "test": (days[first + train], days[first + train + test - 1]),
        }
        if n_validation:
            spans["validation"] = (days[first + n_fit], days[first + train - 1])
        windows.append(_window(f"wf-{k + 1:03d}", spans))
    return windows


# ---------------------------------------------------------------------------------------- YAML block
PROTOCOL_KINDS = ("offline", "online", "walk-forward")
_KEYS = {
    "offline": {"kind": None, "train": None, "test": None, "finetune": None, "validation": None},
    "online": {"kind": None, "train": None, "periods": None, "finetune_days": None},
    "walk-forward": {
        "kind": None,
        "train": 252,
        "test": 21,
        "step": 21,
        "max_windows": 120,
        "validation_fraction": 0.2,
        "start": None,
        "end": None,
    },
}
_REQUIRED = {"offline": ("train", "test"), "online": ("train", "periods"), "walk-forward": ()}


def resolve_protocol(protocol: Any) -> dict[str, Any]:
    """The ``protocol:`` block checked and with defaults filled in, dates as ISO text.

    Checks what can be checked without the data (kinds, keys, date pairs, numbers); errors name the
    field as ``protocol.<key>``. Snapping to trading days happens in `windows_from_config`.
    """
    if not isinstance(protocol, dict):
        raise UserError(f"protocol: expected a mapping with a 'kind' ({', '.join(PROTOCOL_KINDS)})")
    kind = protocol.get("kind")
    if kind not in PROTOCOL_KINDS:
        raise UserError(f"protocol.kind: {kind!r} is not one of {', '.join(PROTOCOL_KINDS)}")
    unknown = sorted(set(protocol) - set(_KEYS[kind]))
    if unknown:
        raise UserError(
            f"protocol.{unknown[0]}: unknown key for kind {kind}; allowed: {', '.join(_KEYS[kind])}"
        )
    missing = [key for key in _REQUIRED[kind] if protocol.get(key) is None]
    if missing:
        raise UserError(f"protocol.{missing[0]}: required for kind {kind}")
    resolved = {key: protocol.get(key, default) for key, default in _KEYS[kind].items()}
    try:
        if kind == "offline":
            for key in ("train", "test", "finetune", "validation"):
                if resolved[key] is not None:
                    resolved[key] = [str(day) for day in _pair(resolved[key], key)]
        elif kind == "online":
            resolved["train"] = [str(day) for day in _pair(resolved["train"], "train")]
            if not isinstance(resolved["periods"], list) or not resolved["periods"]:
                raise UserError("periods: give a non-empty list of [start, end] test periods")
            resolved["periods"] = [
                [str(day) for day in _pair(p, f"periods[{i}]")] for i, p in enumerate(resolved["periods"])
            ]
        else:
            for key in ("start", "end"):
                if resolved[key] is not None:
                    resolved[key] = str(to_day(resolved[key]))
            _check_walk_forward(
                *(resolved[k] for k in ("train", "test", "step", "max_windows", "validation_fraction"))
            )
    except UserError as exc:
        raise UserError(f"protocol.{exc}") from None
    return resolved


def windows_from_config(protocol: dict[str, Any], dates, *, trading_days_per_year: int = 252) -> list[Window]:
    """The windows of an experiment's ``protocol:`` block on the trading days `dates`.

    `trading_days_per_year` (the dataset's calendar) is the default finetuning length of ``online``.
    """
    resolved = resolve_protocol(protocol)
    kind = resolved["kind"]
    try:
        if kind == "offline":
            spans = {k: resolved[k] for k in ("train", "test", "finetune", "validation")}
            return offline_split(**spans, dates=dates)
        if kind == "online":
            return online_adaptation(
                train=resolved["train"],
                periods=resolved["periods"],
                dates=dates,
                finetune_days=resolved["finetune_days"],
                trading_days_per_year=trading_days_per_year,
            )
        return walk_forward(dates, **{k: v for k, v in resolved.items() if k != "kind"})
    except UserError as exc:
        raise UserError(f"protocol: {exc}") from None


def _check_walk_forward(train, test, step, max_windows, validation_fraction) -> None:
    """Types and ranges of the walk-forward lengths (no data needed)."""
    for label, value, low in (("train", train, 2), ("test", test, 2), ("step", step, 1)):
        if not _is_whole(value) or value < low:
            raise UserError(f"{label}: must be a whole number of trading days >= {low}, not {value!r}")
    if max_windows is not None and (not _is_whole(max_windows) or max_windows < 1):
        raise UserError(f"max_windows: must be a whole number >= 1 (or null for all), not {max_windows!r}")
    fraction_ok = isinstance(validation_fraction, int | float) and not isinstance(validation_fraction, bool)
    if not fraction_ok or not 0 <= validation_fraction < 1:
        raise UserError(f"validation_fraction: must be in [0, 1), not {validation_fraction!r}")
    if train - int(round(train * validation_fraction)) < 1:
        raise UserError(f"validation_fraction: {validation_fraction} leaves no training days out of {train}")


def _is_whole(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------- helpers
def _days(dates) -> np.ndarray:
    days = np.asarray(getattr(dates, "dates", dates)).astype("datetime64[D]")
    if days.ndim != 1 or len(days) == 0:
        raise UserError("protocol: the dataset has no trading days")
    return days


def _pair(span, what: str) -> tuple[np.datetime64, np.datetime64]:
    """A ``[start, end]`` pair of dates (inclusive), checked to be in order."""
    if isinstance(span, str) or not isinstance(span, list | tuple) or len(span) != 2:
        raise UserError(f"{what}: expected [start, end] dates like [2019-04-01, 2022-04-01], got {span!r}")
    try:
        start, end = to_day(span[0]), to_day(span[1])
    except UserError as exc:
        raise UserError(f"{what}: {exc}") from None
    if start > end:
        raise UserError(f"{what}: starts on {start}, after it ends on {end}")
    return start, end


def _snap(days: np.ndarray, start, end, what: str) -> tuple[np.datetime64, np.datetime64]:
    """The first and last trading day inside ``[start, end]``; UserError when there is none."""
    i0 = int(np.searchsorted(days, to_day(start), side="left"))
    i1 = int(np.searchsorted(days, to_day(end), side="right")) - 1
    if i1 < i0:
        raise UserError(
            f"{what}: no trading days between {to_day(start)} and {to_day(end)} "
            f"(the dataset covers {days[0]} → {days[-1]})"
        )
    return days[i0], days[i1]


def _window(name: str, spans: dict[str, tuple]) -> Window:
    flat = {
        f"{span}_{side}": day
        for span, pair in spans.items()
        for side, day in zip(("start", "end"), pair, strict=True)
    }
    return Window(name=name, **flat)


__all__ = [
    "PROTOCOL_KINDS",
    "Window",
    "offline_split",
    "online_adaptation",
    "resolve_protocol",
    "walk_forward",
    "windows_from_config",
]
