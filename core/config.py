"""Typed configuration: YAML layers + `--set` overrides, validated with errors a user can act on.

`config/default.yaml` holds every default value (with comments); the models below hold only
types and allowed ranges, so a default is written in exactly one place.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.bounded_yaml import (
    MAX_YAML_CHARS,
    YamlBoundError,
    load_bounded,
)
from core.errors import UserError, shortened, shown
from core.features.registry import NAMES as INDICATOR_NAMES
from core.policies.registry import EXTRACTORS
from core.suggest import did_you_mean
from core.units import span_ns

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = REPO_ROOT / "config" / "default.yaml"

Auto = Literal["auto"]
# Upper bounds no real run reaches, so a typo (1e32 steps) or an overflow is refused with the bound.
LearnerName = Literal["separate", "population"]  # training.learners.registry.LEARNERS
MAX_STEPS = 10**12  # PPO steps per member: a year of a 30k steps/s learner is 1e12
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]  # numpy takes < 2**32; members add their index
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Bps = Annotated[float, Field(ge=0, le=1000)]
# Checked without pandas: this module loads before the thread limits are set.
TIMEFRAME_PATTERN = re.compile(r"[1-9][0-9]*(min|h|d|D)")
Months = Annotated[int, Field(ge=1, le=120)]
MESSAGE_LINE_CHARS = 1000  # a line of a config error: a key, its value, where, what is allowed


def bars_or_span(minimum: int) -> Any:
    """A look-back or horizon: a number of bars (at least `minimum`), a span of time (30d, 2w,
    12h, 90min) or auto; core.features.windows turns the last two into bars for the data."""

    def check(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < minimum:
                raise ValueError(f"expected at least {minimum} bars (or a span such as 30d)")
            return value
        if isinstance(value, str) and (value.strip() == "auto" or span_ns(value) is not None):
            return value.strip()
        raise ValueError(
            f"expected a number of bars (at least {minimum}), a span of time such as 30d, 2w, "
            "12h or 90min, or auto"
        )

    return Annotated[int | str, BeforeValidator(check)]


class Section(BaseModel):
    """Unknown keys are errors (with a suggestion), never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ExogenousConfig(Section):
    """An extra series (macro data, another ticker) joined as of each bar close."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]
    path: str
    columns: list[str] | None = None
    timestamp_column: str = "auto"
    timestamp_format: str = "auto"
    timezone: str | None = None
    available_after: str = "0h"


class DataConfig(Section):
    path: str | None
    timestamp_column: str
    timestamp_format: str
    timezone: str
    bar: str  # a duration such as 1h, or auto (the most common spacing in the data)
    calendar: Literal["auto", "continuous", "sessions"]
    missing_bars: Literal["ffill", "drop", "fail"]
    ffill_limit: Annotated[int, Field(ge=1, le=100_000)]
    # auto: an adjusted-close column (Adj Close, adj_close, ...) when a file has one; none: the
    # raw prices; or the column's name (core.data.adjusted)
    adjusted_close: Annotated[str, Field(min_length=1, max_length=200)]
    splits: Literal["fail", "accept"]  # a move like an unadjusted split: core.data.splits
    exogenous: list[ExogenousConfig]
    cache_dir: str
    sample_dir: str
    synthetic_assets: Annotated[int, Field(ge=1, le=1000)]
    synthetic_years: Annotated[float, Field(gt=0, le=50)]
    synthetic_signal: Annotated[float, Field(ge=0, lt=1)]
    synthetic_permuted: bool
    seed: Seed

    @field_validator("adjusted_close")
    @classmethod
    def _adjusted_close_is_a_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("write auto, none or the name of the adjusted-close column")
        return value.strip()


class FeaturesConfig(Section):
    timeframes: Annotated[list[str], Field(min_length=1)] | Auto
    return_horizons: Annotated[list[bars_or_span(1)], Field(min_length=1)] | Auto
    indicators: list[Literal[INDICATOR_NAMES]]  # type: ignore[valid-type]  # the registry's names
    rsi_period: Annotated[int, Field(ge=2, le=10_000)]
    macd_periods: Annotated[
        list[Annotated[int, Field(ge=2, le=10_000)]], Field(min_length=3, max_length=3)
    ]
    atr_period: Annotated[int, Field(ge=1, le=10_000)]
    bollinger_period: Annotated[int, Field(ge=2, le=10_000)]
    bollinger_width: Annotated[float, Field(gt=0, le=10)]
    volatility_window: bars_or_span(2)
    volume_window: bars_or_span(2)
    normalisation: Literal["rolling", "expanding"]
    normalisation_window: bars_or_span(10)
    clip: Annotated[float, Field(gt=0)]
    regime: Literal["none", "hmm"]  # hmm: core.features.regime, fitted per fold
    regime_states: Annotated[int, Field(ge=2, le=10)]


class EnvConfig(Section):
    window: Annotated[int, Field(ge=1, le=4096)]
    episode_bars: bars_or_span(2)
    long_only: bool
    max_leverage: Annotated[float, Field(gt=0, le=100)]
    min_trade: Annotated[float, Field(ge=0, lt=1)] | Auto
    fee_bps: Bps
    half_spread_bps: Bps
    slippage_bps: Bps
    initial_equity: Annotated[float, Field(gt=0, le=1e15)]
    stop_loss: Annotated[float, Field(gt=0, lt=1)] | None
    take_profit: Annotated[float, Field(gt=0)] | None
    borrow_bps_per_year: Annotated[float, Field(ge=0, le=100_000)]


class RewardConfig(Section):
    reward_scale: Annotated[float, Field(gt=0, le=1e6)]
    reward_clip: Annotated[float, Field(gt=0)]
    drawdown_penalty: NonNegativeFloat
    turnover_penalty: NonNegativeFloat
    trade_band: dict[str, tuple[NonNegativeFloat, NonNegativeFloat]]
    trade_band_penalty: NonNegativeFloat

    @field_validator("trade_band")
    @classmethod
    def _band_is_ordered(
        cls, band: dict[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        for timeframe, (low, high) in band.items():
            if not TIMEFRAME_PATTERN.fullmatch(timeframe):
                raise ValueError(
                    f"trade_band key {timeframe!r} is not a timeframe such as 4h or 1d"
                )
            if low > high:
                raise ValueError(
                    f"trade_band[{timeframe!r}] has min {low:g} above max {high:g}; "
                    "write [min, max] trades per day"
                )
        return band


class PolicyConfig(Section):
    extractor: Literal[tuple(EXTRACTORS)]  # type: ignore[valid-type]  # the registry's names
    share_extractor: bool
    channels: Annotated[int, Field(ge=1, le=4096)]
    patch: Annotated[int, Field(ge=1, le=4096)]
    kernel: Annotated[int, Field(ge=1, le=4096)]
    embedding: Annotated[int, Field(ge=1, le=65536)]
    lstm_hidden: Annotated[int, Field(ge=1, le=65536)]
    lstm_layers: Annotated[int, Field(ge=1, le=16)]


SCHEDULE_PREFIX = "lin_"  # rl-baselines3-zoo's linear schedule: lin_3e-4 goes 3e-4 -> 0


def schedule_start(value: float | str) -> float:
    """The value a `ppo.learning_rate` / `clip_range` / `clip_range_vf` starts training at: the
    number itself, or X of rl-zoo's `lin_X` (linear in SB3's progress_remaining, X -> 0)."""
    if isinstance(value, str):
        return float(value.strip()[len(SCHEDULE_PREFIX) :])
    return float(value)


def schedule_or_number(high: float | None) -> Any:
    """A PPO value SB3 takes as a float or a schedule: a number in (0, high], or `lin_X` with X in
    that range (rl-baselines3-zoo's string: linear from X at the start to 0 at the end)."""
    bound = "" if high is None else f" and at most {high:g}"

    def check(value: Any) -> Any:
        text = value.strip() if isinstance(value, str) else None
        if text is not None and text.startswith(SCHEDULE_PREFIX):
            try:
                start = float(text[len(SCHEDULE_PREFIX) :])
            except ValueError:
                raise ValueError(
                    f"{SCHEDULE_PREFIX}X needs a number X (e.g. lin_3e-4: linear from 3e-4 to 0)"
                ) from None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            start = float(value)
        else:
            raise ValueError(
                f"expected a number or {SCHEDULE_PREFIX}X (linear from X to 0, e.g. lin_3e-4)"
            )
        if not (start > 0 and (high is None or start <= high)) or start == float("inf"):
            raise ValueError(f"expected a value above 0{bound} (a number, or lin_X with such an X)")
        return text if text is not None else value

    return Annotated[float | str, BeforeValidator(check)]


class PPOConfig(Section):
    """Every argument of SB3's PPO (and RecurrentPPO) a run may set; the rest (env, policy,
    seed, device, logging, rollout buffer) the project fills in."""

    net_arch: Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=1)]
    learning_rate: schedule_or_number(1.0)  # type: ignore[valid-type]
    n_steps: Annotated[int, Field(ge=8, le=1_000_000)] | Auto
    batch_size: Annotated[int, Field(ge=8, le=10_000_000)] | Auto
    n_epochs: Annotated[int, Field(ge=1, le=1000)]
    gamma: Annotated[float, Field(gt=0, le=1)]
    gae_lambda: Annotated[float, Field(ge=0, le=1)]
    clip_range: schedule_or_number(1.0)  # type: ignore[valid-type]
    clip_range_vf: schedule_or_number(None) | None  # type: ignore[valid-type]
    normalize_advantage: bool
    ent_coef: Annotated[float, Field(ge=0, le=1)]
    vf_coef: Annotated[float, Field(ge=0, le=10)]
    max_grad_norm: Annotated[float, Field(gt=0)]
    use_sde: bool
    sde_sample_freq: Annotated[int, Field(ge=-1, le=1_000_000)]
    target_kl: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None
    stats_window_size: Annotated[int, Field(ge=1, le=1_000_000)]
    total_timesteps: Steps


ALGORITHMS = ("ppo", "sac", "tqc")  # training.algorithm; core.policies.build.algorithm_class


def _entropy_coefficient(value: Any) -> Any:
    """SB3's ent_coef of SAC/TQC: a number >= 0, `auto` (learned, starting at 1) or `auto_X`
    (learned, starting at X)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("expected a number >= 0, auto or auto_X (learned from X)")
        return float(value)
    text = value.strip() if isinstance(value, str) else None
    if text == "auto":
        return text
    if text is not None and text.startswith("auto_"):
        try:
            start = float(text[len("auto_") :])
        except ValueError:
            start = -1.0
        if start > 0:
            return text
    raise ValueError("expected a number >= 0, auto or auto_X with X > 0 (learned from X)")


class OffPolicyConfig(Section):
    """SAC's arguments a run may set (TQC takes them too); network heads and the step budget are
    every algorithm's: ppo.net_arch and ppo.total_timesteps."""

    learning_rate: schedule_or_number(1.0)  # type: ignore[valid-type]
    buffer_size: int  # checked below: the message says what 0 means
    learning_starts: Annotated[int, Field(ge=0, le=MAX_STEPS)]
    batch_size: Annotated[int, Field(ge=1, le=10_000_000)]
    tau: Annotated[float, Field(gt=0, le=1)]
    gamma: Annotated[float, Field(gt=0, le=1)]
    train_freq: Annotated[int, Field(ge=1, le=1_000_000)]
    gradient_steps: Annotated[int, Field(ge=1, le=1_000_000)] | Auto
    ent_coef: Annotated[float | str, BeforeValidator(_entropy_coefficient)]
    target_entropy: float | Auto
    use_sde: bool
    sde_sample_freq: Annotated[int, Field(ge=-1, le=1_000_000)]

    @field_validator("buffer_size")
    @classmethod
    def _buffer_holds_transitions(cls, size: int) -> int:
        if size < 1 or size > MAX_STEPS:
            raise ValueError(
                f"a replay buffer of {size} transitions holds nothing to learn from\n  fix: set "
                "it to the transitions to keep, e.g. 100000 (at most the member's "
                "ppo.total_timesteps is ever filled)"
            )
        return size


class TQCConfig(OffPolicyConfig):
    """sb3-contrib's TQC: SAC's arguments plus its distributional critics."""

    n_quantiles: Annotated[int, Field(ge=1, le=1000)]
    n_critics: Annotated[int, Field(ge=1, le=100)]
    top_quantiles_to_drop_per_net: Annotated[int, Field(ge=0, le=1000)]

    @model_validator(mode="after")
    def _keeps_some_quantiles(self) -> TQCConfig:
        if self.top_quantiles_to_drop_per_net >= self.n_quantiles:
            raise ValueError(
                f"tqc.top_quantiles_to_drop_per_net ({self.top_quantiles_to_drop_per_net}) must "
                f"be below tqc.n_quantiles ({self.n_quantiles}): every quantile would be dropped"
            )
        return self


class WalkForwardConfig(Section):
    train_years: Annotated[float, Field(gt=0, le=50)] | Auto  # auto: core.fold_sizing
    validation_months: Months | Auto
    test_months: Months | Auto
    step_months: Months | Auto
    embargo_bars: Annotated[int, Field(ge=0, le=10_000_000)] | Auto | Literal["lookback"]
    max_folds: Annotated[int, Field(ge=1, le=10_000)] | None
    mode: Literal["rolling", "expanding"]

    @field_validator("step_months")
    @classmethod
    def _step_is_the_test_window(cls, step: int | str, info: Any) -> int | str:
        # A field validator (not a model one) so the error names walk_forward.step_months and
        # where it was set; test_months is declared above, so it is already in info.data.
        test = info.data.get("test_months")
        if step == "auto" or test is None or step == test:
            return step
        if test == "auto":
            raise ValueError(
                "test windows tile the timeline, so the step is the test window, which is "
                "walk_forward.test_months=auto (sized to the data)\n  fix: set "
                "walk_forward.step_months to auto, or walk_forward.test_months to a number too"
            )
        effect = (
            "overlap, and the stitched out-of-sample series would count bars twice"
            if step < test
            else f"leave {step - test} month(s) untested between them"
        )
        raise ValueError(
            f"not walk_forward.test_months = {test}: test windows tile the timeline (each "
            f"fold's test starts where the one before ended); with this step they would "
            f"{effect}\n  fix: set walk_forward.step_months to auto (= test_months) or {test}, "
            "or change walk_forward.test_months"
        )


RISK_SECTIONS = ("env", "reward")  # what a risk profile may change: never the network


class EnsembleConfig(Section):
    size: Annotated[int, Field(ge=1, le=10_000)]
    base_seed: Seed
    aggregate: Literal["mean", "median", "vote"]
    risk_profiles: dict[str, dict[str, dict[str, Any]]]
    mode: Literal["independent", "fedavg"]
    sync_steps: Steps | Auto
    sync_weighting: Literal["equal", "validation"]
    sync_temperature: Annotated[float, Field(gt=0)]
    sync_timeout_s: Annotated[float, Field(ge=1, le=7 * 86_400)]
    sync_optimizer: Literal["keep", "reset"]
    learner: Literal["auto"] | LearnerName

    @field_validator("risk_profiles")
    @classmethod
    def _profiles_touch_risk_only(
        cls, profiles: dict[str, dict[str, dict[str, Any]]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        for name, sections in profiles.items():
            other = sorted(set(sections) - set(RISK_SECTIONS))
            if other:
                raise ValueError(
                    f"risk profile {name!r} sets {', '.join(other)}: a profile changes only the "
                    f"reward and the env's risk settings ({' and '.join(RISK_SECTIONS)} keys), so "
                    "members keep one network shape"
                )
        return profiles


class LauncherConfig(Section):
    cluster: Literal["local", "slurm", "debug"]
    cluster_profile: str | None
    max_retries: Annotated[int, Field(ge=0, le=100)]
    timeout_min: Annotated[int, Field(ge=1, le=60 * 24 * 365)]
    signal_delay_s: Annotated[int, Field(ge=1, le=3600)]
    dead_after_s: Annotated[float, Field(ge=2, le=86_400)]
    log_dir: str | Auto


class HardwareConfig(Section):
    device: Literal["auto", "cpu", "cuda"]
    members_concurrent: Annotated[int, Field(ge=1, le=100_000)] | Auto
    group_size: Annotated[int, Field(ge=1, le=100_000)] | Auto
    vec_env: Literal["batch", "subproc"]
    n_envs: Annotated[int, Field(ge=1, le=100_000)] | Auto
    env_workers: Annotated[int, Field(ge=0, le=10_000)] | Auto
    envs_per_worker: Annotated[int, Field(ge=1, le=4096)] | Auto
    torch_threads: Annotated[int, Field(ge=1, le=1024)] | Auto
    blas_threads: Annotated[int, Field(ge=1, le=1024)] | Auto
    target_rollout_steps: Annotated[int, Field(ge=256, le=10_000_000)]
    max_env_workers_per_member: Annotated[int, Field(ge=1, le=10_000)]
    gpu_min_minibatch_macs: Annotated[int, Field(ge=0, le=10**15)]
    memory_headroom: Fraction
    gpu_memory_headroom: Fraction
    learner_memory_gb: Annotated[float, Field(gt=0, le=1_000_000)]
    worker_memory_gb: Annotated[float, Field(gt=0, le=1_000_000)]


CALLBACK_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def _callback_name(value: Any) -> Any:
    """`module.path:ClassName` of an SB3 callback (imported by the trainer, not here: this
    module loads before the thread limits are set)."""
    if not isinstance(value, str) or not CALLBACK_PATTERN.fullmatch(value.strip()):
        raise ValueError(
            "expected 'module.path:ClassName' of a stable-baselines3 callback class "
            "(e.g. my_package.callbacks:LogGradients)"
        )
    return value.strip()


class TrainingConfig(Section):
    algorithm: Literal[ALGORITHMS]  # type: ignore[valid-type]
    eval_every_steps: Steps | Auto
    validation_metric: Literal["sharpe", "sortino", "calmar", "total_return"]
    patience: Annotated[int, Field(ge=1, le=1_000_000)] | None
    select: Literal["best", "last"]
    checkpoint_every_steps: Steps | Auto
    min_action_std: Annotated[float, Field(ge=0)]
    min_entropy: float | None
    entropy_target: float | None
    ent_coef_max: Annotated[float, Field(ge=0, le=1)]
    tensorboard: bool
    callbacks: list[Annotated[str, BeforeValidator(_callback_name)]]


class EvaluationConfig(Section):
    periods_per_year: Annotated[float, Field(gt=0)] | Auto
    ma_fast_bars: bars_or_span(1)
    ma_slow_bars: bars_or_span(2)
    significance: Annotated[float, Field(gt=0.5, lt=1)]
    constant_position_std: Annotated[float, Field(ge=0, le=1)]

    @model_validator(mode="after")
    def _fast_below_slow(self) -> EvaluationConfig:
        # Spans and auto are compared once resolved for the data (core.features.windows).
        numbers = isinstance(self.ma_fast_bars, int) and isinstance(self.ma_slow_bars, int)
        if numbers and self.ma_fast_bars >= self.ma_slow_bars:
            raise ValueError(
                f"evaluation.ma_fast_bars ({self.ma_fast_bars}) must be below "
                f"evaluation.ma_slow_bars ({self.ma_slow_bars})"
            )
        return self


class TuningParam(Section):
    """One searched config key: float or int (log or not) between low and high, or a choice."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds_or_choices(self) -> TuningParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices` list")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(
                f"a {self.type} parameter needs low < high (got {self.low}, {self.high})"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scaled parameter needs low > 0 (got {self.low})")
        return self


class PbtConfig(Section):
    """tuning.schedule pbt: exploit and explore inside a population group (Ray Tune's defaults)."""

    interval_steps: Steps | Auto  # auto: every validation (training.eval_every_steps)
    quantile: Annotated[float, Field(gt=0, le=0.5)]
    perturb: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
    resample_probability: Annotated[float, Field(ge=0, le=1)]


class TuningConfig(Section):
    n_trials: Annotated[int, Field(ge=1, le=100_000)]
    seeds_per_trial: Annotated[int, Field(ge=1, le=100)]
    trials_per_group: Annotated[int, Field(ge=1, le=10_000)] | Auto
    schedule: Literal["independent", "pbt"]
    pbt: PbtConfig
    aggregate: Literal["median", "mean"]
    pruner: Literal["wilcoxon", "median", "none"]
    wilcoxon_p_threshold: Annotated[float, Field(gt=0, lt=1)]
    sampler_seed: Seed
    heartbeat_s: Annotated[int, Field(ge=1, le=3600)]
    grace_s: Annotated[int, Field(ge=2, le=86_400)]
    space: dict[str, TuningParam]

    @field_validator("space")
    @classmethod
    def _dotted_keys(cls, space: dict[str, TuningParam]) -> dict[str, TuningParam]:
        for key in space:
            if key.count(".") != 1:
                raise ValueError(f"{key!r} is not a SECTION.KEY config key (e.g. ppo.ent_coef)")
        return space


class Config(Section):
    data: DataConfig
    features: FeaturesConfig
    env: EnvConfig
    reward: RewardConfig
    policy: PolicyConfig
    ppo: PPOConfig
    sac: OffPolicyConfig
    tqc: TQCConfig
    training: TrainingConfig
    evaluation: EvaluationConfig
    walk_forward: WalkForwardConfig
    ensemble: EnsembleConfig
    hardware: HardwareConfig
    launcher: LauncherConfig
    tuning: TuningConfig


Sources = dict[str, str]
"""Dotted key -> where its value came from (a file path or `--set`)."""


def load_config(
    files: Sequence[Path | str] = (),
    overrides: Sequence[str] = (),
    base: Path = DEFAULT_CONFIG_PATH,
) -> Config:
    """Layer base YAML, then each file, then `--set key=value` overrides; validate once at the end."""
    raw, sources = resolve_raw(files, overrides, base)
    return validate(raw, sources)


def resolve_raw(
    files: Sequence[Path | str], overrides: Sequence[str], base: Path = DEFAULT_CONFIG_PATH
) -> tuple[dict[str, Any], Sources]:
    raw: dict[str, Any] = {}
    sources: Sources = {}
    for path in [base, *map(Path, files)]:
        _merge(raw, read_yaml_mapping(path), sources, _display_path(path), prefix="")
    for text in overrides:
        key, value = parse_override(text)
        _merge(raw, _nest(key, value), sources, f"--set {text}", prefix="")
    return raw, sources


def read_yaml_mapping(
    path: Path, what: str = "config file", flag: str = "--config"
) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file and line."""
    try:
        if path.stat().st_size > MAX_YAML_CHARS * 4:  # never read a huge file to refuse it
            raise UserError(
                f"{what} {path} is {path.stat().st_size:,} bytes: not a config file\n"
                f"  fix: pass {flag} a YAML file under {MAX_YAML_CHARS:,} characters"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"{what} not found: {path}\n  fix: check the path passed to {flag}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise UserError(
            f"cannot read {what} {path}: {why}\n  fix: pass {flag} a YAML file"
        ) from None
    try:
        loaded = load_bounded(text)
    except YamlBoundError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserError(f"{what} refused at {where}: {exc.problem}\n  fix: {exc.fix}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(
            f"invalid YAML at {where}: {shortened(problem)}\n  fix: correct the YAML syntax there"
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(
            f"{path} must hold a mapping of sections (e.g. 'ppo:'), not a {type(loaded).__name__}"
        )
    return loaded


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value` with the value read as YAML, so `[64, 64]`, `true` and `null` work."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key or "." not in key:
        raise UserError(
            f"--set {text!r} is not of the form section.key=value\n"
            "  example: --set ppo.ent_coef=0.01"
        )
    try:
        value = load_bounded(value_text) if value_text.strip() else ""
    except YamlBoundError as exc:
        raise UserError(
            f"--set {shortened(key)}: the value is refused: {exc.problem}\n  fix: {exc.fix}"
        ) from None
    except yaml.YAMLError:
        value = value_text
    return key, value


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    nested: Any = value
    for part in reversed(dotted.split(".")):
        nested = {part: nested}
    return nested


def _merge(target: dict, layer: Mapping, sources: Sources, origin: str, prefix: str) -> None:
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value, sources, origin, prefix=f"{dotted}.")
            continue
        target[key] = dict(value) if isinstance(value, Mapping) else value
        for leaf in _leaf_keys(value, dotted):
            sources.pop(leaf, None)  # re-insert so the latest setting comes last
            sources[leaf] = origin


def _leaf_keys(value: Any, dotted: str) -> Iterable[str]:
    if isinstance(value, Mapping) and value:
        for key, sub in value.items():
            yield from _leaf_keys(sub, f"{dotted}.{key}")
    else:
        yield dotted


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def validate(raw: dict[str, Any], sources: Sources | None = None) -> Config:
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, raw, sources or {})) from None
    _refuse_entropy_under_gsde(config, sources or {})
    _refuse_misfit_algorithm(config, sources or {})
    for name in config.ensemble.risk_profiles:
        risk_profile_config(config, name)  # a bad value fails now, not in a job an hour later
    return config


def _refuse_misfit_algorithm(config: Config, sources: dict[str, str]) -> None:
    """Settings the chosen algorithm would ignore or cannot train, named with the fix."""
    algorithm = config.training.algorithm

    def where(key: str, value: object) -> str:
        return f"{key}={value}" + (f" (set in {sources[key]})" if key in sources else "")

    chosen = where("training.algorithm", algorithm)
    for name in ("sac", "tqc"):
        if getattr(config, name).use_sde and algorithm != name:
            raise UserError(
                f"invalid configuration: {where(f'{name}.use_sde', 'true')}, but "
                f"training.algorithm={algorithm} does not read the {name}: section\n"
                f"  fix: set training.algorithm={name}, or {name}.use_sde=false"
                + (" and ppo.use_sde=true for PPO's gSDE" if algorithm == "ppo" else "")
            )
    section = None if algorithm == "ppo" else getattr(config, algorithm)
    if section is None:
        return
    if config.ppo.use_sde:
        raise UserError(
            f"invalid configuration: {where('ppo.use_sde', 'true')}, but {chosen} does not "
            f"train PPO\n  fix: set {algorithm}.use_sde=true for {algorithm.upper()}'s own "
            "gSDE, and ppo.use_sde=false"
        )
    if EXTRACTORS[config.policy.extractor].recurrent:
        raise UserError(
            f"invalid configuration: {where('policy.extractor', config.policy.extractor)} "
            f"is recurrent, which only RecurrentPPO trains; {chosen} has no recurrent policy\n  fix: set policy.extractor to flat, shared_asset or multi_timeframe_cnn, or "
            "training.algorithm=ppo"
        )
    if config.ensemble.mode == "fedavg":
        raise UserError(
            f"invalid configuration: {where('ensemble.mode', 'fedavg')} averages PPO members' "
            f"weights every round; {chosen} is not built for it (each member's "
            "critics, targets and replay buffer would disagree with the averaged actor)\n"
            "  fix: set ensemble.mode=independent, or training.algorithm=ppo"
        )
    if config.training.entropy_target is not None:
        raise UserError(
            f"invalid configuration: {where('training.entropy_target', config.training.entropy_target)} raises PPO's ent_coef; "
            f"{algorithm.upper()} tunes its own entropy weight\n  fix: set "
            f"training.entropy_target=null and {algorithm}.target_entropy (with "
            f"{algorithm}.ent_coef=auto)"
        )
    if config.training.min_entropy is not None:
        raise UserError(
            f"invalid configuration: {where('training.min_entropy', config.training.min_entropy)} "
            f"reads PPO's state-independent log_std; {algorithm.upper()}'s actor outputs a spread "
            "per state, so there is no such number to watch\n  fix: set training.min_entropy=null "
            "(training.min_action_std still watches the actions' spread)"
        )
    budget = config.ppo.total_timesteps
    if section.learning_starts >= budget:
        raise UserError(
            f"invalid configuration: "
            f"{where(f'{algorithm}.learning_starts', section.learning_starts)}: "
            f"{section.learning_starts:,} random steps before the first update, but a member "
            f"takes only {budget:,} steps per fold (ppo.total_timesteps): it would never learn\n"
            f"  fix: set {algorithm}.learning_starts to at most {budget // 10:,} (a tenth of the "
            "budget), or raise ppo.total_timesteps"
        )


def _refuse_entropy_under_gsde(config: Config, sources: Sources) -> None:
    """The entropy floor and alarm read the Gaussian's own log_std; under gSDE the spread
    depends on the state, so that number is not the policy's entropy: refused, not misread."""
    training = config.training
    keys = [
        f"training.{name}"
        for name in ("entropy_target", "min_entropy")
        if getattr(training, name) is not None
    ]
    if config.ppo.use_sde and keys:
        where = ", ".join(
            f"{key} (set in {sources[key]})" if key in sources else key
            for key in ["ppo.use_sde", *keys]
        )
        raise UserError(
            f"invalid configuration: {where}: the entropy floor and alarm read a "
            "state-independent log_std, which ppo.use_sde (gSDE) does not have\n"
            f"  fix: set {' and '.join(keys)} to null, or ppo.use_sde=false"
        )


def risk_profile_config(config: Config, name: str) -> Config:
    """The config a member of risk profile `name` trains with: the profile's env and reward
    settings over the run's."""
    raw = config.model_dump(mode="json")
    for section, values in config.ensemble.risk_profiles[name].items():
        raw[section] = {**raw[section], **values}
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        title = f"invalid risk profile ensemble.risk_profiles.{name}"
        raise UserError(format_validation_error(exc, raw, {}, title=title)) from None


def format_validation_error(
    exc: ValidationError,
    raw: Mapping[str, Any],
    sources: Sources,
    root: type[BaseModel] = Config,
    title: str = "invalid configuration",
) -> str:
    """One line per bad key: the key, the value, where it was set, and what is allowed."""
    lines: list[str] = []
    seen: set[str] = set()
    for error in exc.errors():
        key, model, field = _locate(error["loc"], root)
        if key in seen:
            continue
        seen.add(key)
        base_key = key.split("[", 1)[0]
        origin = _nearest_source(base_key, sources)
        where = f" (set in {origin})" if origin else ""
        if error["type"] == "extra_forbidden":
            lines.append(_unknown_key_message(key, model, where))
        elif error["type"] == "missing":
            lines.append(f"missing key '{key}'{where}: it is required")
        else:
            value = _lookup(raw, key)
            if error["type"] == "value_error":  # a validator's own explanation
                lines.append(f"{key} = {shown(value)}{where} is not valid: {error['ctx']['error']}")
                continue
            expected = _describe_field(model, field) if field else error["msg"]
            lines.append(f"{key} = {shown(value)}{where} is not valid: expected {expected}")
    lines = [shortened(line, MESSAGE_LINE_CHARS) for line in lines]
    header = f"{title}:" if len(lines) > 1 else f"{title}: "
    return header + ("\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0])


def _locate(loc: tuple, root: type[BaseModel]) -> tuple[str, type[BaseModel], str | None]:
    """Walk an error location through the models; return the dotted key, its model and leaf field."""
    model = root
    parts: list[str] = []
    field: str | None = None
    for item in loc:
        if isinstance(item, int) and parts:
            parts[-1] += f"[{item}]"
            continue
        if field is not None:  # past the leaf: the rest names union branches, not keys
            break
        parts.append(str(item))
        if item not in model.model_fields:
            break
        annotation = model.model_fields[item].annotation
        if typing.get_origin(annotation) is list:  # a list of sections: descend past the index
            annotation = typing.get_args(annotation)[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            field = str(item)
    return ".".join(parts), model, field


def _unknown_key_message(key: str, model: type[BaseModel], where: str) -> str:
    section, _, name = shortened(key).rpartition(".")
    valid = sorted(model.model_fields)
    hint = did_you_mean(name, valid, f"{section}." if section else "")
    listing = f"\n    valid keys{' in ' + section if section else ''}: {', '.join(valid)}"
    return f"unknown key '{key}'{where}{hint}{listing}"


def _nearest_source(key: str, sources: Sources) -> str | None:
    """Where the key, a key inside it or the section holding it was set last."""
    origins = [
        origin
        for dotted, origin in sources.items()
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + ".")
    ]
    return origins[-1] if origins else None


def _lookup(raw: Mapping[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.replace("[", ".").replace("]", "").split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _describe_field(model: type[BaseModel], field: str) -> str:
    info = model.model_fields[field]
    return describe_type(info.annotation, info.metadata)


def describe_type(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """Plain-English description of an annotation, including its numeric range."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *extra = typing.get_args(annotation)
        inner = [m for item in extra for m in getattr(item, "metadata", [item])]
        return describe_type(base, [*inner, *metadata])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(arg) for arg in typing.get_args(annotation))
    if origin is Literal:
        choices = typing.get_args(annotation)
        return ("one of " if len(choices) > 1 else "") + ", ".join(repr(arg) for arg in choices)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return f"a list of ({describe_type(item)})" + _range_text(metadata)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if annotation is type(None):
        return "null"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))) + _range_text(
        metadata
    )


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) >= 1 else f"{value:g}"


def _range_text(metadata: Sequence[Any]) -> str:
    symbols = {
        annotated_types.Ge: ("≥", "ge"),
        annotated_types.Gt: (">", "gt"),
        annotated_types.Le: ("≤", "le"),
        annotated_types.Lt: ("<", "lt"),
    }
    parts = []
    for item in metadata:
        for kind, (symbol, attr) in symbols.items():
            if isinstance(item, kind):
                parts.append(f"{symbol} {_number(getattr(item, attr))}")
        if isinstance(item, annotated_types.MinLen):
            parts.append(f"with at least {item.min_length} item(s)")
    return (" " + " and ".join(parts)) if parts else ""


def dump_config(config: Config) -> str:
    """The resolved config as YAML, in section order, ready to be saved or passed back via --config."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, default_flow_style=False)
