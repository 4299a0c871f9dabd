"""Bad days end in one clear message (what, where, fix), fast, with nothing half-written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.config import MAX_STEPS, load_config
from core.errors import UserError

PRESETS = Path(__file__).resolve().parents[1] / "config" / "presets"


def refusal(files: list[Path] = (), overrides: list[str] = ()) -> tuple[str, float]:
    """The message load_config refuses these with, and how long refusing took."""
    start = time.perf_counter()
    with pytest.raises(UserError) as caught:
        load_config(files, overrides)
    return str(caught.value), time.perf_counter() - start


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: each level's list holds `width` aliases of the level before."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast_with_a_short_message(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    message, seconds = refusal([bomb])
    assert seconds < 2
    assert f"{bomb}:" in message and "alias" in message and "  fix: " in message
    assert len(message) < 400


def test_alias_bomb_inside_a_section_is_refused(tmp_path: Path) -> None:
    """Nested under a real key, where validating or quoting it once ran out of memory."""
    items = ["- &a0 [" + ", ".join(["1"] * 9) + "]"]
    items += [f"- &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 9)]
    nested = tmp_path / "nested.yaml"
    nested.write_text("ppo:\n  net_arch:\n" + "".join(f"    {item}\n" for item in items))
    message, seconds = refusal([nested])
    assert seconds < 2 and "aliases expand" in message and len(message) < 400


def test_endless_and_deep_yaml_are_refused(tmp_path: Path) -> None:
    endless = tmp_path / "endless.yaml"
    endless.write_text("ppo:\n  net_arch: &loop [1, *loop]\n")
    assert "its own anchor" in refusal([endless])[0]
    deep = tmp_path / "deep.yaml"
    deep.write_text("ppo:\n  net_arch: " + "[" * 5000 + "]" * 5000 + "\n")
    message, seconds = refusal([deep])
    assert "nested deeper than" in message and seconds < 2


def test_a_few_aliases_still_load(tmp_path: Path) -> None:
    shared = tmp_path / "aliases.yaml"
    shared.write_text("ppo:\n  net_arch: &arch [32, 16]\npolicy:\n  channels: 8\n")
    assert load_config([shared]).ppo.net_arch == [32, 16]


def test_a_huge_value_is_quoted_short(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("ppo:\n  n_epochs: " + "x" * 3_000_000 + "\n")
    message, _ = refusal([big])
    assert "more than the" in message and len(message) < 400  # past the file size bound
    long_value = tmp_path / "long.yaml"
    long_value.write_text("ppo:\n  n_epochs: [" + ", ".join(["'many'"] * 5_000) + "]\n")
    message, _ = refusal([long_value])
    assert "ppo.n_epochs = [" in message and len(message) < 600


def test_sizes_have_upper_bounds_that_the_message_states() -> None:
    message, _ = refusal(overrides=["ppo.total_timesteps=1.0e+32"])
    assert "ppo.total_timesteps" in message and f"≤ {MAX_STEPS:,}" in message
    for key, value in [
        ("ensemble.size", 10**9),
        ("hardware.n_envs", 10**9),
        ("ppo.n_steps", 10**9),
        ("ppo.batch_size", 10**9),
        ("tuning.n_trials", 10**9),
        ("walk_forward.max_folds", 10**9),
        ("ensemble.base_seed", 2**40),
        ("training.checkpoint_every_steps", 10**15),
    ]:
        message, _ = refusal(overrides=[f"{key}={value}"])
        assert f"{key} = {value}" in message and "≤" in message, message


@pytest.mark.parametrize("preset", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_presets_load_within_the_bounds(preset: Path) -> None:
    load_config([preset])
