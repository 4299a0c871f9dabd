"""Look-backs and horizons in bars, from a config that may give them as spans of time or `auto`.

A setting such as `features.normalisation_window` decides how much history a number summarises:
720 bars are a month of hourly bars and three years of daily ones. So each may be a number of
bars, a span (`30d`, `2w`, `12h`: converted with the calendar's bars per year, so 30d is 720
hourly bars on a 24/7 market and about 21 daily bars of a stock) or `auto`: the hourly default
in bars, capped by a span of time so longer bars keep a look-back of sensible length. On hourly
(or shorter) bars every `auto` is today's hourly value; on daily bars the features warm up in
well under a year. The per-timeframe windows (volatility, volume, return horizons) count bars of
each timeframe, as before; a span is converted with the base bar.

Light: pydantic config and arithmetic only, so a store's meta can resolve a config anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.config import Config
from core.errors import UserError
from core.units import DAY_NS, HOUR_NS, YEAR_NS, format_duration, span_ns

MONTH_DAYS = 30.4375  # a calendar month, 365.25 / 12 days


@dataclass(frozen=True)
class AutoRule:
    """`auto` = `bars`, but never more than `cap_days` of bars on the calendar; with
    `clock`, the cap counts the bar's own length (720 hours / bar), not the calendar's bars."""

    bars: int
    cap_days: float
    minimum: int
    clock: bool = False

    def describe(self) -> str:
        if self.clock:
            return f"{self.bars} bars, at most {self.cap_days:g} days of bars of this length"
        span = "a month" if self.cap_days < 365 else "a year"
        return f"{self.bars} bars, at most {span} of bars on this calendar"


# The hourly defaults of every look-back and horizon, and the cap that fits them to long bars.
RULES: dict[tuple[str, str], AutoRule] = {
    ("features", "normalisation_window"): AutoRule(720, 30, 10, clock=True),
    ("features", "volatility_window"): AutoRule(24, MONTH_DAYS, 2),
    ("features", "volume_window"): AutoRule(24, MONTH_DAYS, 2),
    ("env", "episode_bars"): AutoRule(720, 365.25, 2),
    ("evaluation", "ma_fast_bars"): AutoRule(24, MONTH_DAYS, 1),
    ("evaluation", "ma_slow_bars"): AutoRule(168, 365.25, 2),
}
HORIZONS = ("features", "return_horizons")
AUTO_HORIZONS = (1, 4, 24)  # each capped like volatility_window


@dataclass(frozen=True)
class Resolved:
    """A window setting as given and as resolved, for the data summary."""

    key: str
    given: str
    bars: str
    reason: str


def resolve_windows(
    config: Config, bar_ns: int, bars_per_year: float
) -> tuple[Config, list[Resolved]]:
    """`config` with every window as a number of bars, and what was converted (auto or span)."""
    updates: dict[str, dict[str, object]] = {}
    notes: list[Resolved] = []
    for (section, key), rule in RULES.items():
        value = getattr(getattr(config, section), key)
        if isinstance(value, int):
            continue
        bars, reason = _resolve(f"{section}.{key}", value, rule, bar_ns, bars_per_year)
        updates.setdefault(section, {})[key] = bars
        notes.append(Resolved(f"{section}.{key}", str(value), str(bars), reason))
    horizons = config.features.return_horizons
    if horizons == "auto" or any(not isinstance(h, int) for h in horizons):
        resolved_horizons = _horizons(horizons, bar_ns, bars_per_year)
        updates.setdefault("features", {})["return_horizons"] = resolved_horizons
        reason = (
            f"{', '.join(map(str, AUTO_HORIZONS))} bars of each timeframe, each at most a month "
            "of base bars"
            if horizons == "auto"
            else "spans converted with the base bar"
        )
        given = "auto" if horizons == "auto" else f"[{', '.join(map(str, horizons))}]"
        notes.append(Resolved("features.return_horizons", given, str(resolved_horizons), reason))
    if not updates:
        return config, notes
    resolved = config.model_copy(
        update={
            section: getattr(config, section).model_copy(update=values)
            for section, values in updates.items()
        }
    )
    fast, slow = resolved.evaluation.ma_fast_bars, resolved.evaluation.ma_slow_bars
    if fast >= slow:
        raise UserError(
            f"evaluation.ma_fast_bars ({config.evaluation.ma_fast_bars} = {fast} bars) must be "
            f"below evaluation.ma_slow_bars ({config.evaluation.ma_slow_bars} = {slow} bars) on "
            f"{format_duration(bar_ns)} bars\n  fix: set both to numbers of bars or longer spans"
        )
    return resolved, notes


def window_bars(section: str, key: str, value: int | str, meta: dict) -> int:
    """One window in bars for a store (its meta's bar and bars per year), as given or resolved:
    what an env or a baseline reads when its config comes straight from a file."""
    if isinstance(value, int):
        return value
    bar_ns, per_year = int(meta["bar_ns"]), float(meta["resolved"]["bars_per_year"])
    return _resolve(f"{section}.{key}", value, RULES[(section, key)], bar_ns, per_year)[0]


def window_settings(config: Config, bar_ns: int, bars_per_year: float) -> dict[str, dict]:
    """{section: {key: bars}} for every window that was `auto` or a span (config_inferred.yaml)."""
    resolved, notes = resolve_windows(config, bar_ns, bars_per_year)
    settings: dict[str, dict] = {}
    for note in notes:
        section, key = note.key.split(".")
        settings.setdefault(section, {})[key] = getattr(getattr(resolved, section), key)
    return settings


def _resolve(
    key: str, value: str, rule: AutoRule, bar_ns: int, bars_per_year: float
) -> tuple[int, str]:
    per_day = bars_per_year / (YEAR_NS / DAY_NS)
    if value == "auto":
        cap = rule.cap_days * DAY_NS / bar_ns if rule.clock else rule.cap_days * per_day
        bars = max(rule.minimum, min(rule.bars, round(cap)))
        return bars, rule.describe()
    ns = span_ns(value)
    if ns is None:  # the config's validator lets only spans through; a store's meta may not
        raise UserError(f"{key} = {value!r} is not a number of bars, a span or auto")
    bars = round(ns / DAY_NS * per_day)
    if bars < rule.minimum:
        raise UserError(
            f"{key} = {value!r} is {bars} bar(s) of {format_duration(bar_ns)} "
            f"({bars_per_year:,.0f} bars a year), below its minimum of {rule.minimum}\n"
            f"  fix: give a longer span, or a number of bars (at least {rule.minimum})"
        )
    return bars, f"{value} at {per_day:.4g} bars a day"


def _horizons(horizons: Sequence[int | str] | str, bar_ns: int, bars_per_year: float) -> list[int]:
    """Distinct horizons in bars, in the order given (a cap can make two equal)."""
    per_day = bars_per_year / (YEAR_NS / DAY_NS)
    if horizons == "auto":
        cap = max(1, round(MONTH_DAYS * per_day))
        values = [min(h, cap) for h in AUTO_HORIZONS]
    else:
        values = []
        for index, item in enumerate(horizons):
            if isinstance(item, int):
                values.append(item)
                continue
            ns = span_ns(item) or 0
            bars = round(ns / DAY_NS * per_day)
            if bars < 1:
                raise UserError(
                    f"features.return_horizons[{index}] = {item!r} is shorter than one "
                    f"{format_duration(bar_ns)} bar\n  fix: give a span of at least one bar"
                )
            values.append(bars)
    return list(dict.fromkeys(values))


def hourly_bars_per_year() -> float:
    """What a config-only estimate assumes before the data is read: 24/7 hourly bars."""
    return YEAR_NS / HOUR_NS
