"""Config layering, overrides and the error messages a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import dump_config, load_config, parse_override
from core.errors import UserError


def error_of(**kwargs) -> str:
    with pytest.raises(UserError) as caught:
        load_config(**kwargs)
    return str(caught.value)


def test_default_config_is_complete_and_round_trips(tmp_path: Path, default_config) -> None:
    saved = tmp_path / "resolved.yaml"
    saved.write_text(dump_config(default_config))
    assert load_config([saved]) == default_config
    assert default_config.ppo.n_steps == "auto"


def test_files_layer_in_order_and_set_wins(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text("ppo:\n  ent_coef: 0.01\n  n_epochs: 5\n")
    second = tmp_path / "second.yaml"
    second.write_text("ppo:\n  ent_coef: 0.02\n")
    config = load_config([first, second], ["ppo.n_epochs=7", "ppo.net_arch=[128, 32]"])
    assert config.ppo.ent_coef == 0.02
    assert config.ppo.n_epochs == 7
    assert config.ppo.net_arch == [128, 32]
    assert config.ppo.gamma == load_config().ppo.gamma  # untouched keys keep defaults


def test_unknown_key_names_the_closest_valid_key() -> None:
    message = error_of(overrides=["ppo.n_step=64"])
    assert "unknown key 'ppo.n_step'" in message
    assert "did you mean 'ppo.n_steps'" in message
    assert "--set ppo.n_step=64" in message


def test_unknown_section_names_the_closest_section(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("hardwre:\n  device: cpu\n")
    message = error_of(files=[path])
    assert "unknown key 'hardwre'" in message
    assert "did you mean 'hardware'" in message
    assert str(path) in message


def test_wrong_type_names_key_value_and_allowed_range() -> None:
    message = error_of(overrides=["ppo.n_steps=many"])
    assert "ppo.n_steps = 'many'" in message
    assert "an integer ≥ 8" in message and "'auto'" in message


def test_out_of_range_values_are_each_reported() -> None:
    message = error_of(overrides=["reward.reward_clip=-1", "hardware.memory_headroom=1.5"])
    assert "reward.reward_clip = -1" in message and "> 0" in message
    assert "hardware.memory_headroom = 1.5" in message and "< 1" in message


def test_choice_error_lists_the_choices() -> None:
    message = error_of(overrides=["hardware.device=gpu"])
    assert "'auto', 'cpu', 'cuda'" in message


def test_value_from_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("env:\n  window: 0\n")
    message = error_of(files=[path])
    assert "env.window = 0" in message and "mine.yaml" in message


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("ppo:\n  n_steps: [1, 2\n")
    message = error_of(files=[path])
    assert f"{path}:" in message and "invalid YAML" in message


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    assert "must hold a mapping" in error_of(files=[path])


def test_missing_config_file() -> None:
    assert "config file not found" in error_of(files=["/nonexistent/ploutos.yaml"])


@pytest.mark.parametrize("text", ["ppo", "=3", "ppo=3", "n_steps=3"])
def test_malformed_set_is_refused(text: str) -> None:
    with pytest.raises(UserError, match=r"section\.key=value"):
        parse_override(text)


@given(st.integers(min_value=8, max_value=1_000_000))
def test_any_in_range_n_steps_is_accepted(value: int) -> None:
    assert load_config(overrides=[f"ppo.n_steps={value}"]).ppo.n_steps == value


@given(st.one_of(st.integers(max_value=7), st.integers(min_value=1_000_001)))
def test_any_out_of_range_n_steps_names_the_key(value: int) -> None:
    message = error_of(overrides=[f"ppo.n_steps={value}"])
    assert f"ppo.n_steps = {value}" in message and "≤ 1,000,000" in message


def test_risk_profiles_change_env_and_reward_only_and_are_checked_at_load() -> None:
    from core.config import risk_profile_config

    profiles = (
        "ensemble.risk_profiles={calm: {env: {max_leverage: 0.5}, reward: {drawdown_penalty: 1.0}}}"
    )
    config = load_config(overrides=[profiles])
    calm = risk_profile_config(config, "calm")
    assert calm.env.max_leverage == 0.5 and calm.reward.drawdown_penalty == 1.0
    assert calm.ppo == config.ppo and config.env.max_leverage == 1.0
    with pytest.raises(UserError, match="only the reward and the env's risk settings"):
        load_config(overrides=["ensemble.risk_profiles={big: {ppo: {net_arch: [512]}}}"])
    with pytest.raises(UserError) as error:
        load_config(overrides=["ensemble.risk_profiles={bad: {env: {max_leverage: -1}}}"])
    assert "risk_profiles.bad" in str(error.value) and "env.max_leverage" in str(error.value)
