"""Walk-forward folds: calendar boundaries, embargoes, rolling vs expanding, too-short data."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rich.console import Console

from core.bar_range import BarRange
from core.config import Config, load_config
from core.envs.settings import env_settings
from core.errors import UserError
from core.evaluation.rollout import rollout
from core.features.matrix import lookback_bars
from core.folds import CONTRACT_GAP_BARS, MONTH_NS, YEAR_NS, Fold, check_length, coverage, split
from tests.helpers.datasets import hourly as resolve_hourly
from tests.helpers.stores import built_store, poisoned_copy, small_config
from training.views.folds import folds_document, folds_table

HOUR_NS = 3_600 * 1_000_000_000
DAY_NS = 24 * HOUR_NS
START_NS = 946_684_800 * 1_000_000_000  # 2000-01-01 00:00 UTC, a Saturday
HOURS_PER_YEAR = 8_766  # 365.25 days
HOURS_6_MONTHS = 4_383  # half of that


def hourly(n_bars: int) -> np.ndarray:
    return START_NS + np.arange(n_bars, dtype=np.int64) * HOUR_NS


def config(*overrides: str) -> Config:
    """Hand-checkable defaults: 5 y train, 6 mo validation / test / step, 24-bar embargo."""
    base = ["env.window=25", "walk_forward.embargo_bars=24", "walk_forward.train_years=5",
            "walk_forward.validation_months=6", "walk_forward.test_months=6"]  # fmt: skip
    return load_config(overrides=[*base, *overrides])


def spans(fold: Fold) -> list[tuple[int, int]]:
    return [(part.start, part.stop) for part in fold.parts().values()]


# ---------------------------------------------------------------- hand-checked


def test_hourly_rolling_folds_by_hand() -> None:
    # u0 = 24; train ends 5 y = 43,830 h later; validation and test end 4,383 h apart each;
    # the 24-bar gap comes out of the end of train and of validation; test windows tile.
    folds = split(hourly(7 * HOURS_PER_YEAR), HOUR_NS, config())
    assert [spans(fold) for fold in folds] == [
        [(24, 43_830), (43_854, 48_213), (48_237, 52_620)],
        [(4_407, 48_213), (48_237, 52_596), (52_620, 57_003)],
    ]  # fold 2 would end at 61,386 > 61,362 bars
    assert [fold.index for fold in folds] == [0, 1]
    assert all(fold.embargo_bars == 24 for fold in folds)


def test_test_window_must_end_inside_the_data() -> None:
    fold_zero_end = 24 + 5 * HOURS_PER_YEAR + 2 * HOURS_6_MONTHS
    assert len(split(hourly(fold_zero_end), HOUR_NS, config())) == 1
    with pytest.raises(UserError, match="dataset too short"):
        split(hourly(fold_zero_end - 1), HOUR_NS, config())


def test_expanding_train_starts_at_the_first_usable_bar_and_grows() -> None:
    timestamps = hourly(8 * HOURS_PER_YEAR)
    rolling = split(timestamps, HOUR_NS, config())
    expanding = split(timestamps, HOUR_NS, config("walk_forward.mode=expanding"))
    assert len(expanding) == len(rolling) == 4
    assert {fold.train.start for fold in expanding} == {24}
    assert [len(fold.train) for fold in expanding] == [
        43_830 - 24 + i * HOURS_6_MONTHS
        for i in range(4)  # less the 24-bar gap
    ]
    assert [fold.train.stop for fold in expanding] == [fold.train.stop for fold in rolling]
    assert [spans(f)[1:] for f in expanding] == [spans(f)[1:] for f in rolling]
    assert len({len(fold.train) for fold in rolling}) == 1


def test_max_folds_caps_the_count() -> None:
    timestamps = hourly(8 * HOURS_PER_YEAR)
    capped = split(timestamps, HOUR_NS, config("walk_forward.max_folds=2"))
    assert capped == split(timestamps, HOUR_NS, config())[:2]


def test_auto_gap_is_what_the_execution_contract_needs() -> None:
    auto = load_config(overrides=["walk_forward.train_years=1"])
    folds = split(hourly(3 * HOURS_PER_YEAR), HOUR_NS, auto)
    assert {fold.embargo_bars for fold in folds} == {CONTRACT_GAP_BARS} == {0}
    for fold in folds:  # each part's last reward reads its own last bar: parts may touch
        assert fold.train.stop == fold.validation.start
        assert fold.validation.stop == fold.test.start


def test_lookback_embargo_is_the_feature_lookback() -> None:
    lookback = resolve_hourly(
        load_config(overrides=["walk_forward.train_years=1", "walk_forward.embargo_bars=lookback"])
    )
    folds = split(hourly(3 * HOURS_PER_YEAR), HOUR_NS, lookback)
    expected = lookback_bars(lookback.features, HOUR_NS)
    assert expected > 0 and {fold.embargo_bars for fold in folds} == {expected}
    assert folds[0].validation.start == folds[0].train.stop + expected


def test_to_json_names_bars_and_utc_times() -> None:
    timestamps = hourly(7 * HOURS_PER_YEAR)
    (first, _) = split(timestamps, HOUR_NS, config())
    document = first.to_json(timestamps, HOUR_NS)
    assert document["index"] == 0 and document["embargo_bars"] == 24
    assert document["train"] == {
        "start": 24,
        "stop": 43_830,
        "bars": 43_806,
        "first": "2000-01-02 00:00 UTC",
        "last": "2004-12-31 05:00 UTC",
        "end": "2004-12-31 06:00 UTC",
    }
    assert document["test"]["bars"] == 52_620 - 48_237


def test_views_show_every_fold() -> None:
    timestamps = hourly(7 * HOURS_PER_YEAR)
    folds = split(timestamps, HOUR_NS, config())
    assert folds_document(folds, timestamps, HOUR_NS) == [
        fold.to_json(timestamps, HOUR_NS) for fold in folds
    ]
    console = Console(width=140, record=True)
    console.print(folds_table(folds, timestamps, HOUR_NS))
    text = console.export_text()
    assert "2000-01-02 → 2004-12-31" in text and "43,806 bars" in text
    assert "24 × 1h bars" in text and "2 fold(s)" in text


# ---------------------------------------------------------------- errors


def test_too_short_says_needed_available_span_and_a_fix_that_fits() -> None:
    timestamps = hourly(3 * HOURS_PER_YEAR)
    with pytest.raises(UserError) as caught:
        split(timestamps, HOUR_NS, config())
    message = str(caught.value)
    assert "dataset too short" in message
    assert "about 52,620 bars of 1h" in message  # 24 warm-up + 6 y of hours
    assert "the dataset has 26,298 (26,274 after warm-up" in message
    assert "2000-01-01 00:00 UTC to 2002-12-31 17:00 UTC" in message
    assert "walk_forward.validation_months / walk_forward.test_months" in message
    suggested = re.search(r"--set (walk_forward\.train_years=[0-9.]+)", message)
    assert suggested is not None
    assert split(timestamps, HOUR_NS, config(suggested.group(1)))


def test_embargo_longer_than_validation_is_named() -> None:
    with pytest.raises(UserError) as caught:
        split(hourly(7 * HOURS_PER_YEAR), HOUR_NS, config("walk_forward.embargo_bars=5000"))
    message = str(caught.value)
    assert "validation window holds 4,383 bar(s)" in message
    assert "walk_forward.embargo_bars" in message


def test_check_length_is_split_after_the_feature_warmup() -> None:
    timestamps = hourly(7 * HOURS_PER_YEAR)
    check_length(timestamps, HOUR_NS, config(), warmup_bars=8_000)
    with pytest.raises(UserError) as caught:
        check_length(timestamps, HOUR_NS, config(), warmup_bars=9_000)
    message = str(caught.value)
    assert "9,024 warm-up bars (9,000 feature look-back + 24 for env.window)" in message
    assert "the dataset has 61,362 (52,338 after warm-up" in message


@pytest.mark.parametrize(("step", "effect"), [(3, "overlap"), (9, "leave 3 month(s) untested")])
def test_a_step_other_than_the_test_window_is_rejected_at_load(step: int, effect: str) -> None:
    with pytest.raises(UserError) as caught:
        load_config(overrides=["walk_forward.test_months=6", f"walk_forward.step_months={step}"])
    message = str(caught.value)
    assert (
        f"walk_forward.step_months = {step} (set in --set walk_forward.step_months={step})"
        in message
    )
    assert effect in message and "walk_forward.step_months to auto (= test_months) or 6" in message
    six = ["walk_forward.test_months=6", "walk_forward.step_months=6"]
    assert load_config(overrides=six).walk_forward.step_months == 6
    with pytest.raises(UserError, match=r"walk_forward\.test_months=auto \(sized to the data\)"):
        load_config(overrides=["walk_forward.step_months=6"])  # test_months auto: no number fits


def test_mode_is_rolling_or_expanding() -> None:
    assert load_config().walk_forward.mode == "rolling"
    with pytest.raises(UserError, match="'rolling', 'expanding'"):
        load_config(overrides=["walk_forward.mode=sliding"])


# ---------------------------------------------------------------- properties


def reference(timestamps: np.ndarray, bar_ns: int, cfg: Config, index: int) -> list[BarRange]:
    """Fold `index` from the calendar by counting bars before each boundary (no searchsorted)."""
    walk, first = cfg.walk_forward, cfg.env.window - 1
    gap = int(walk.embargo_bars)
    if first >= len(timestamps):
        return []
    origin = int(timestamps[first])
    shift = index * walk.test_months * MONTH_NS
    train_end = origin + shift + round(walk.train_years * YEAR_NS)
    validation_end = train_end + walk.validation_months * MONTH_NS
    test_end = validation_end + walk.test_months * MONTH_NS
    if test_end > int(timestamps[-1]) + bar_ns:
        return []
    start = origin + shift if walk.mode == "rolling" else origin
    a, b, c, d = (int((timestamps < t).sum()) for t in (start, train_end, validation_end, test_end))
    parts = [BarRange(max(a, first), b - gap), BarRange(b, c - gap), BarRange(c, d)]
    fewest = max(2, cfg.env.window)  # an episode's two bars; never under the env's look-back
    return parts if all(p.stop - p.start >= fewest for p in parts) else []


@st.composite
def walk_configs(draw: st.DrawFn) -> Config:
    test_months = draw(st.integers(1, 12))
    return load_config(
        overrides=[
            f"env.window={draw(st.integers(1, 40))}",
            f"walk_forward.train_years={draw(st.integers(1, 60)) / 10}",
            f"walk_forward.validation_months={draw(st.integers(1, 12))}",
            f"walk_forward.test_months={test_months}",
            f"walk_forward.step_months={draw(st.sampled_from(['auto', test_months]))}",
            f"walk_forward.embargo_bars={draw(st.integers(0, 20))}",
            f"walk_forward.mode={draw(st.sampled_from(['rolling', 'expanding']))}",
            f"walk_forward.max_folds={draw(st.sampled_from(['null', 1, 3]))}",
        ]
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, int, Config]:
    """A config and a timeline from a bit under one fold's span to several folds, with gaps."""
    cfg = draw(walk_configs())
    bar_ns = draw(st.sampled_from([DAY_NS, 4 * HOUR_NS]))
    fold_years = cfg.walk_forward.train_years + (cfg.walk_forward.validation_months + 12) / 12
    n_bars = int(fold_years * draw(st.integers(8, 30)) / 10 * YEAR_NS / bar_ns)
    timestamps = START_NS + np.arange(n_bars, dtype=np.int64) * bar_ns
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    keep = rng.random(n_bars) >= draw(st.sampled_from([0.0, 0.0, 0.1, 0.5]))
    if draw(st.booleans()):  # one long outage
        gap_start = int(rng.integers(0, n_bars))
        keep[gap_start : gap_start + int(rng.integers(1, n_bars // 3 + 2))] = False
    kept = timestamps[keep]
    return (kept if len(kept) >= 2 else timestamps[:2]), bar_ns, cfg


@settings(max_examples=60, deadline=None)
@given(cases())
def test_folds_keep_their_invariants_and_are_maximal(case: tuple[np.ndarray, int, Config]) -> None:
    timestamps, bar_ns, cfg = case
    walk, first = cfg.walk_forward, cfg.env.window - 1
    if not reference(timestamps, bar_ns, cfg, 0):
        with pytest.raises(UserError, match=r"dataset too short|fold 0 does not fit"):
            split(timestamps, bar_ns, cfg)
        return
    folds = split(timestamps, bar_ns, cfg)
    gap = int(walk.embargo_bars)
    for index, fold in enumerate(folds):
        assert fold.index == index and fold.embargo_bars == gap
        assert list(fold.parts().values()) == reference(timestamps, bar_ns, cfg, index)
        # no overlap, and no reward of one part reads a bar of the next: a part's last reward
        # is priced at its own last bar (stop - 1), the next part starts at or after stop
        assert fold.train.stop + gap == fold.validation.start
        assert fold.validation.stop + gap == fold.test.start
        assert all(first <= p.start and p.stop <= len(timestamps) for p in fold.parts().values())
        assert all(len(part) >= max(2, cfg.env.window) for part in fold.parts().values())
        # the test walk decides first at the close of the bar before the window: each test bar's
        # return is earned by exactly one decision, and none reads a bar after the one it is at
        walked = fold.test_walk
        assert (walked.start + 1, walked.stop) == (fold.test.start, fold.test.stop)
        assert walked.start >= fold.validation.stop - 1
    for earlier, later in itertools.pairwise(folds):
        assert earlier.test.stop == later.test.start  # test windows tile: no hole, no overlap
        if walk.mode == "expanding":
            assert later.train.start == earlier.train.start == first
    if walk.max_folds is None or len(folds) < walk.max_folds:
        assert not reference(timestamps, bar_ns, cfg, len(folds))
    else:
        assert len(folds) == walk.max_folds
    # Every bar after the first train + validation is in exactly one test window, except a
    # final stretch that coverage names (a partial window, or beyond max_folds).
    tested = np.zeros(len(timestamps), int)
    for fold in folds:
        tested[fold.test.start : fold.test.stop] += 1
    after = tested[folds[0].test.start :]
    covered = coverage(folds, timestamps, cfg)
    assert covered.tested == after.sum() and covered.available == len(after)
    assert set(np.unique(after)) <= {0, 1}
    untested = covered.untested_first
    if untested is None:
        assert after.all()
    else:
        assert tested[folds[0].test.start : untested].all() and not tested[untested:].any()
        assert covered.fraction < 1 and "not tested" in covered.describe(timestamps)


# ---------------------------------------------------------------- rewards stay inside their part


def test_no_reward_of_a_part_reads_a_bar_of_the_next(tmp_path: Path) -> None:
    """With the default gap the parts touch; prices from the next part's first bar on are NaN,
    yet every reward of the part is finite: a part prices its last decision at its own last bar."""
    store = built_store(tmp_path / "store", n_bars=2_600, n_assets=2)
    walk = ["walk_forward.train_years=0.05", "walk_forward.validation_months=1"]
    cfg = small_config(*walk, "walk_forward.test_months=1", "env.window=8")
    folds = split(np.asarray(store.timestamps), store.bar_ns, cfg)
    assert folds and folds[0].embargo_bars == 0
    rng = np.random.default_rng(0)

    def noisy(obs: dict, weights: np.ndarray, t: int) -> np.ndarray:
        return rng.uniform(-1, 1, weights.shape[1])

    for fold in folds:
        for name, part in fold.parts().items():
            folder = tmp_path / f"{fold.index}-{name}"
            poisoned = poisoned_copy(store, folder, part.start, part.stop, 8)
            track = rollout(poisoned, env_settings(cfg), part, {"noisy": noisy})["noisy"]
            assert len(track.returns) == len(part) - 1
            assert np.isfinite(track.returns).all() and np.isfinite(track.rewards).all()


# ---------------------------------------------------------------- auto windows


def _sized(n_bars: int, bar_ns: int, *overrides: str) -> tuple[list[Fold], Config]:
    from core.folds import sized_config

    timestamps = START_NS + np.arange(n_bars, dtype=np.int64) * bar_ns
    cfg = load_config(overrides=["env.window=25", *overrides])
    return split(timestamps, bar_ns, cfg), sized_config(timestamps, bar_ns, cfg)


@settings(max_examples=25, deadline=None)
@given(months=st.integers(8, 78), daily=st.booleans())
def test_auto_windows_give_data_of_8_months_and_more_two_folds_each_window_long_enough(
    months: int, daily: bool
) -> None:
    from core.fold_sizing import MIN_EVAL_BARS, MIN_TRAIN_BARS

    bar_ns = 24 * HOUR_NS if daily else HOUR_NS
    per_month = MONTH_NS // bar_ns
    assume(not daily or months >= 12)  # 8 months of daily bars hold about 240: too few
    folds, sized = _sized(int(months * per_month), bar_ns)
    assert len(folds) >= 2
    for fold in folds:
        assert len(fold.test) >= MIN_EVAL_BARS and len(fold.validation) >= MIN_EVAL_BARS
        assert len(fold.train) >= MIN_TRAIN_BARS
    walk = sized.walk_forward
    assert (
        walk.validation_months == walk.test_months and walk.train_years * 12 >= 4 * walk.test_months
    )


def test_years_of_hourly_bars_keep_the_research_windows_and_a_number_wins() -> None:
    folds, sized = _sized(7 * HOURS_PER_YEAR, HOUR_NS)
    walk = sized.walk_forward
    assert (walk.train_years, walk.validation_months, walk.test_months) == (5.0, 6, 6)
    assert len(folds) == 2
    _, given = _sized(7 * HOURS_PER_YEAR, HOUR_NS, "walk_forward.test_months=3")
    assert given.walk_forward.test_months == 3 and given.walk_forward.train_years == 5.0
    _, short = _sized(HOURS_PER_YEAR, HOUR_NS, "walk_forward.validation_months=2")
    assert short.walk_forward.validation_months == 2 and short.walk_forward.test_months == 1


def test_too_few_bars_for_any_fold_name_the_bars_needed_and_given() -> None:
    with pytest.raises(UserError) as refused:
        _sized(200, HOUR_NS)
    message = str(refused.value)
    assert message.startswith("dataset too short for any walk-forward fold")
    needed = int(re.search(r"need about ([\d,]+) bars", message).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert "the dataset has 200" in message and "no walk_forward setting fits" in message
    folds, _ = _sized(needed + 24, HOUR_NS)  # the bars it names are enough
    assert len(folds) >= 1
    with pytest.raises(
        UserError, match=r"train_years=0\.\d+ --set walk_forward\.validation_months=1"
    ):
        _sized(3 * 30 * 24, HOUR_NS, "features.normalisation_window=24")  # 3 months: below auto


def test_the_plan_says_what_auto_chose_and_why() -> None:
    from core.folds import sized_windows

    timestamps = hourly(HOURS_PER_YEAR)
    (note,) = sized_windows(timestamps, HOUR_NS, load_config()).notes
    line = note.line()
    assert line.startswith(
        "walk_forward.train_years / validation_months / test_months = 0.333 y / 1 mo / 1 mo"
    )
    assert "hold 0 fold(s) of the research windows" in line and "at least 20 per validation" in line
    assert sized_windows(timestamps, HOUR_NS, config()).notes == ()  # all given: nothing to say


def test_a_window_shorter_than_the_envs_look_back_is_refused_with_the_minimum() -> None:
    daily = START_NS + np.arange(3 * 365, dtype=np.int64) * 24 * HOUR_NS
    cfg = load_config(overrides=["env.window=40", "walk_forward.train_years=1",
                                 "walk_forward.validation_months=1", "walk_forward.test_months=1"])  # fmt: skip
    with pytest.raises(UserError) as refused:
        split(daily, 24 * HOUR_NS, cfg)  # a month of daily bars: 30 < 40
    message = str(refused.value)
    assert "fold 0 does not fit: its validation window holds" in message
    assert "at least 40 are needed (env.window, the bars one observation looks back" in message
    assert "lower env.window" in message
