"""The learner choice and the cut of a fold's members into groups."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from core.config import load_config
from core.hardware.groups import (
    FLAT_GROUP_MAX_OBS,
    choose_learner,
    group_sizes,
    groups_per_fold,
)


@given(st.integers(1, 200), st.integers(1, 50))
def test_group_sizes_cover_every_member_once_and_differ_by_at_most_one(
    members: int, groups: int
) -> None:
    groups = min(groups, members)
    sizes = group_sizes(members, groups)
    assert sum(sizes) == members and len(sizes) == groups
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


@given(st.integers(1, 100), st.integers(1, 12), st.integers(1, 64), st.integers(1, 100))
def test_groups_per_fold_respects_the_largest_group_and_is_never_worse_than_one_group(
    members: int, folds: int, slots: int, largest: int
) -> None:
    count = groups_per_fold(members, folds, slots, largest)
    assert math.ceil(members / count) <= largest
    fewest = math.ceil(members / largest)

    def makespan(n: int) -> int:
        return math.ceil(folds * n / slots) * math.ceil(members / n)

    assert makespan(count) <= makespan(fewest)


def test_twenty_members_on_three_folds_and_two_slots_make_three_waves_of_ten() -> None:
    assert groups_per_fold(20, 3, 2, 20) == 2 and group_sizes(20, 2) == [10, 10]


def test_the_learner_says_why_it_stays_separate() -> None:
    def choice(*overrides: str, members: int = 8, obs: int = 145) -> tuple[str, str]:
        made = choose_learner(load_config(overrides=list(overrides)), members, obs, 2, 1.1, 20.0)
        return made.learner, made.learner_why

    assert choice("policy.extractor=flat")[0] == "population"
    assert "one member per fold" in choice(members=1)[1]
    assert choice("ensemble.mode=fedavg")[0] == "population"  # averaged in memory in a group
    assert "stacked Adam" in choice("ensemble.mode=fedavg", "ensemble.sync_optimizer=reset")[1]
    assert "RecurrentPPO" in choice("policy.extractor=lstm")[1]
    assert "subproc" in choice("hardware.vec_env=subproc")[1]
    big = FLAT_GROUP_MAX_OBS + 1
    learner, why = choice("policy.extractor=flat", obs=big)
    assert learner == "separate" and "0.97x" in why
    assert (
        choice("policy.extractor=flat", "ensemble.learner=population", obs=big)[0] == "population"
    )
    assert choice("policy.extractor=shared_asset", obs=big)[0] == "population"
    assert choice("ensemble.learner=separate")[1] == "ensemble.learner=separate in the config"


def test_the_group_size_is_what_one_slots_memory_holds() -> None:
    config = load_config(overrides=["hardware.learner_memory_gb=1.0"])
    made = choose_learner(config, 50, 145, 2, 1.5, 9.0)  # 4.5 GB a slot: (4.5 - 1) / 0.5 = 7
    assert made.group_size == 7 and "= 7" in made.group_why
    fixed = choose_learner(load_config(overrides=["hardware.group_size=3"]), 50, 145, 2, 1.5, 9.0)
    assert fixed.group_size == 3 and fixed.group_chosen == "config"
