"""Fit an ensemble's training to a machine: processes, envs, rollout and batch sizes, device, threads.

The planner is a pure function of (hardware, config, ensemble size). Each value is either taken
from the config (an override) or chosen here, and every choice records why, so a user can read
the plan, disagree, and override one value without guessing the rest.

Invariants (tested over random machines): batch_size divides n_envs * n_steps with at least four
minibatches; members_concurrent * threads_per_member <= usable CPUs; the members running at once
fit in memory (and GPU memory) with the configured headroom. Given the run's folds, the processes
at once count its jobs (members x folds), or its groups with the population learner; a note on
idle CPUs names only `--set` changes that, planned again, keep more of them busy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from core.algorithms import off_policy, stored_transitions
from core.config import Config, LearnerName, validate
from core.errors import UserError
from core.features.registry import INDICATORS
from core.features.registry import TIME_COLUMNS as TIME_COLUMN_NAMES
from core.hardware import replay
from core.hardware.autotune import Autotune, DeviceProbe
from core.hardware.groups import (
    LearnerChoice,
    choose_learner,
    groups_per_fold,
    separate_because,
)
from core.hardware.machine import Hardware
from core.policies.layout import layout_from_names
from core.policies.size import policy_macs, policy_parameters
from core.units import GIB

FLOAT_BYTES = 4
MIN_MINIBATCHES = 4
MIN_N_STEPS, MAX_N_STEPS = 64, 2048
AUTO_ENVS_PER_WORKER = 1  # SB3's SubprocVecEnv holds one env per process
# The batch env steps every env in the learner: n_steps near this keeps GAE's horizon (gamma 0.99
# looks ~100 bars ahead) inside one rollout, and n_envs fills the rest of the target rollout.
BATCH_N_STEPS = 128
MAX_AUTO_BATCH_ENVS = 1024
AUTO_TIMEFRAMES_ESTIMATE = ("1h", "4h", "1d")  # features.timeframes: auto on hourly bars
AUTO_HORIZONS_ESTIMATE = 3  # features.return_horizons: auto = [1, 4, 24] on hourly bars
MAX_AUTO_TORCH_THREADS = 8
# With the batch env the learner process also steps the envs, so it may use a few more threads.
MAX_AUTO_BATCH_TORCH_THREADS = 16
CUDA_CONTEXT_GB = 0.5
OFF_POLICY_NETWORKS = 3  # SAC/TQC: an actor, critics and their targets, each about PPO's size
UNSTATED_GPU_ROOM = 10**6  # member slots on a GPU whose memory nobody stated: not bounded
# Feature columns each indicator adds per timeframe, from the registry; "time" is added once.
INDICATOR_COLUMNS = {name: len(spec.columns) for name, spec in INDICATORS.items()}
TIME_COLUMNS = len(TIME_COLUMN_NAMES)


@dataclass(frozen=True)
class Decision:
    value: Any
    chosen: Literal["auto", "config", "measured"]
    why: str


@dataclass(frozen=True)
class PolicyShape:
    obs_dim: int
    action_dim: int
    params: int
    hidden: tuple[int, ...]
    extractor: str = "flat"
    macs: int = 0  # multiply-adds of one forward pass per observation (core.policies.size)


@dataclass(frozen=True)
class Plan:
    ensemble_size: int
    members_concurrent: int
    waves: int
    device: str
    gpu_assignment: tuple[int, ...]
    env_workers: int
    envs_per_worker: int
    n_envs: int
    n_steps: int
    rollout_size: int
    batch_size: int
    n_minibatches: int
    torch_threads: int
    blas_threads: int
    threads_per_member: int
    threads_in_use: int
    usable_cpus: int
    memory_per_member_gb: float
    memory_budget_gb: float
    gpu_memory_per_member_gb: float  # per process: a whole group's with the population learner
    obs_dim: int
    policy_params: int
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()  # the reasons that are not about one decision
    decisions: dict[str, Decision] = field(default_factory=dict)
    learner: LearnerName = (
        "separate"  # population: a fold's members train in groups (core.hardware.groups)
    )
    group_size: int = 1  # the most members one group (one process, one slot) holds
    folds: int = 1  # the run's folds the plan counted (1: planned for one fold, or one SLURM task)
    units: int = 0  # processes the run needs: jobs (members x folds), or groups with population
    # env-steps/s of one member as --autotune measured the chosen settings on this machine
    measured_steps_per_s: float | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        data["notes"] = list(self.notes)
        data["gpu_assignment"] = list(self.gpu_assignment)
        return data


def estimate_policy_shape(
    config: Config, n_assets: int | None = None, feature_names: Sequence[str] | None = None
) -> PolicyShape:
    """Observation size and the exact parameter count of the policy `policy.extractor` builds:
    exact once the feature store gives `n_assets` and `feature_names`, else the layout is
    estimated from the config (without importing numpy or torch)."""
    assets = n_assets or config.data.synthetic_assets
    window = config.env.window
    if feature_names is not None:
        layout = layout_from_names(assets, window, list(feature_names))
    else:
        features = config.features
        horizons = features.return_horizons
        per_timeframe = (AUTO_HORIZONS_ESTIMATE if horizons == "auto" else len(horizons)) + sum(
            INDICATOR_COLUMNS.get(name, 0) for name in features.indicators
        )
        # timeframes: auto depends on the data's bar: estimate with the hourly choice; the
        # feature store gives the exact columns once it is built.
        labels = AUTO_TIMEFRAMES_ESTIMATE if features.timeframes == "auto" else features.timeframes
        names = [f"{label}_{column}" for label in labels for column in range(per_timeframe)]
        names += ["time"] * (TIME_COLUMNS if "time" in features.indicators else 0)
        layout = layout_from_names(assets, window, names)
    params = policy_parameters(config.policy, list(config.ppo.net_arch), layout)
    macs = policy_macs(config.policy, list(config.ppo.net_arch), layout)
    return PolicyShape(
        layout.obs_dim, assets, params, tuple(config.ppo.net_arch), config.policy.extractor, macs
    )


def plan(
    hardware: Hardware,
    config: Config,
    ensemble_size: int | None = None,
    n_assets: int | None = None,
    feature_names: Sequence[str] | None = None,
    autotune: Autotune | None = None,
    folds: int | None = None,
    device_probe: DeviceProbe | None = None,
) -> Plan:
    """The resource plan for `ensemble_size` members (default: config.ensemble.size);
    `n_assets` / `feature_names` (per asset) come from the feature store when it exists;
    `autotune` (a cached `--autotune` probe of this machine) replaces the rules it measured;
    `folds` (the run's, once split) makes the processes at once count the run's jobs or groups,
    not one fold's members (without it the plan is for one fold, or for one SLURM task)."""

    def again(changed: Config) -> Plan:
        size = None if ensemble_size in (None, config.ensemble.size) else ensemble_size
        return _plan(
            hardware, changed, size, n_assets, feature_names, autotune, folds, device_probe
        )

    result = _plan(
        hardware, config, ensemble_size, n_assets, feature_names, autotune, folds, device_probe
    )
    whole_run = folds is not None and ensemble_size in (None, config.ensemble.size)
    return _advised(result, hardware, config, again, whole_run)


def _advised(
    result: Plan,
    hardware: Hardware,
    config: Config,
    again: Callable[[Config], Plan],
    whole_run: bool,
) -> Plan:
    """The plan with its notes on idle CPUs and on hyper-threads; each `--set` they name was
    planned again (`again`) and does what the note says."""
    notes = [_idle_note(result, config, again, whole_run)]
    if result.threads_in_use > hardware.physical_cores < hardware.logical_cpus:
        notes.append(_hyperthreads(result, hardware, config, again))
    added = tuple(note for note in notes if note)
    decided = len(result.decisions)
    reasons = (*result.reasons[:decided], *added, *result.reasons[decided:])
    return replace(result, notes=(*added, *result.notes), reasons=reasons)


def _idle_note(
    result: Plan, config: Config, again: Callable[[Config], Plan], whole_run: bool
) -> str:
    """Why CPUs stay idle, and each `--set` that keeps more of them busy ('' when none idle);
    a change that would not is never suggested."""
    idle = result.usable_cpus - result.threads_in_use
    if idle <= 0:
        return ""
    tips = []
    for key, value in _candidates(result, config, whole_run):
        try:
            other = again(_changed(config, key, value))
        except UserError:  # the change does not fit this machine: not advice
            continue
        if other.threads_in_use > result.threads_in_use:
            flag = f" (--ensemble {value})" if key == "ensemble.size" else ""
            tips.append(
                f"--set {key}={value}{flag} keeps {other.threads_in_use} of "
                f"{result.usable_cpus} busy ({other.members_concurrent} at once x "
                f"{other.threads_per_member} threads)"
            )
    note = f"{idle} of {result.usable_cpus} usable CPUs stay idle: {_idle_cause(result, idle)}; "
    note += (
        "; or ".join(tips)
        if tips
        else "no change the plan tries (hardware.members_concurrent, "
        "hardware.max_env_workers_per_member, a larger ensemble) keeps more of them busy"
    )
    return note


def _hyperthreads(
    result: Plan, hardware: Hardware, config: Config, again: Callable[[Config], Plan]
) -> str:
    """Why the plan counts hyper-threads as CPUs, what was not measured (docs/planning.md), and
    the change that keeps to physical cores, planned again."""
    cores, threads = hardware.physical_cores, result.threads_in_use
    note = (
        f"hyper-threads are counted: {threads} threads on {cores} physical cores "
        f"({hardware.logical_cpus} logical CPUs), so some share a core. On purpose: usable CPUs "
        "are logical CPUs, the unit the affinity mask, the cgroup quota and SLURM's "
        "--cpus-per-task count, and a thread per logical CPU keeps both siblings of a core busy; "
        "whether that beats one thread per core for PPO was not measured (no SMT machine was at "
        "hand)"
    )
    members = min(result.members_concurrent, cores)
    change = {"hardware.members_concurrent": members, "hardware.torch_threads": cores // members}
    try:
        changed = config
        for key, value in change.items():
            changed = _changed(changed, key, value)
        other = again(changed)
    except UserError:
        return note
    if other.threads_in_use > cores:
        return note
    sets = " ".join(f"--set {key}={value}" for key, value in change.items())
    return (
        f"{note}. To keep to physical cores: {sets} keeps {other.threads_in_use} threads on the "
        f"{cores} cores ({other.members_concurrent} at once x {other.threads_per_member} threads)"
    )


def _idle_cause(result: Plan, idle: int) -> str:
    members = result.members_concurrent
    decision = result.decisions["members_concurrent"]
    share = result.usable_cpus // members
    if decision.chosen == "config":
        return f"hardware.members_concurrent={decision.value} in the config runs {members} at once"
    if "memory:" in decision.why:
        return f"memory holds {members} process(es) at once (see members_concurrent)"
    what = "group(s)" if result.learner == "population" else "job(s)"
    if result.threads_per_member < share:
        return (
            f"the run's {result.units} {what} take {result.threads_per_member} thread(s) each "
            "(see torch_threads and env_workers)"
        )
    return (
        f"{result.usable_cpus} CPUs shared evenly by {members} processes at once ({share} each) "
        f"leave {idle} over"
    )


def _candidates(result: Plan, config: Config, whole_run: bool) -> list[tuple[str, Any]]:
    """Changes that may put idle CPUs to work; `_advised` keeps those that do."""
    hw = config.hardware
    found: list[tuple[str, Any]] = []
    if hw.members_concurrent != "auto":
        found.append(("hardware.members_concurrent", "auto"))
    if hw.vec_env == "subproc" and result.env_workers == hw.max_env_workers_per_member:
        share = result.usable_cpus // result.members_concurrent
        learner = max(result.torch_threads, result.blas_threads)
        found.append(
            ("hardware.max_env_workers_per_member", (share - learner) // result.blas_threads)
        )
    if whole_run and result.members_concurrent >= result.units and config.ensemble.mode != "fedavg":
        # The run's own processes are the limit: more members give the CPUs work.
        usable, folds, threads = result.usable_cpus, result.folds, result.threads_per_member
        if threads < usable // result.members_concurrent:  # each takes all it may: more of them
            wanted: int | None = -(-(usable // max(threads, 1)) // folds)
        else:  # an even split leaves a remainder: the next ensemble that splits the CPUs evenly
            sizes = range(result.ensemble_size + 1, usable // folds + 1)
            wanted = next((n for n in sizes if usable % (n * folds) == 0), None)
        if wanted is not None and wanted > result.ensemble_size:
            found.append(("ensemble.size", wanted))
    return found


def _changed(config: Config, dotted: str, value: Any) -> Config:
    """`config` with one key changed and validated, as `--set dotted=value` would."""
    section, key = dotted.split(".")
    raw = config.model_dump()
    raw[section][key] = value
    return validate(raw)


def _plan(
    hardware: Hardware,
    config: Config,
    ensemble_size: int | None,
    n_assets: int | None,
    feature_names: Sequence[str] | None,
    autotune: Autotune | None,
    folds: int | None,
    device_probe: DeviceProbe | None = None,
) -> Plan:
    ensemble = ensemble_size or config.ensemble.size
    if ensemble < 1:
        raise UserError(f"ensemble size must be at least 1, got {ensemble}")
    runs = folds or 1
    shape = estimate_policy_shape(config, n_assets, feature_names)
    notes = _Notes()
    device = _choose_device(hardware, config, shape, notes, device_probe)
    budget_gb = hardware.memory_available_gb * (1 - config.hardware.memory_headroom)

    def fitted(slots: int | None) -> _Processes:
        if slots is None:
            layout = _fit_members(hardware, config, ensemble, device, shape, budget_gb, notes, runs)
        else:
            layout = _adopt(_layout(slots, hardware, config, device, shape), notes)
        if autotune is not None:
            layout = _measured(layout, autotune, hardware, config, device, shape, budget_gb, notes)
        return layout

    layout = fitted(None)
    # Members per fold decide the learner, also where the plan is for one SLURM task (ensemble 1):
    # each array task then holds a group.
    members = config.ensemble.size
    choice = choose_learner(
        config, members, shape.obs_dim, layout.members, layout.memory_gb, budget_gb
    )
    units = ensemble * runs
    if choice.learner == "population" and device == "cuda":
        layout, choice, units = _gpu_groups(hardware, config, shape, runs, fitted, budget_gb, notes)
    elif choice.learner == "population" and folds is not None:
        layout, choice, units = _fill_groups(
            layout, choice, config, (runs, shape.obs_dim), fitted, budget_gb, notes
        )
    chosen = "auto" if config.ensemble.learner == "auto" else "config"
    notes.decide("learner", choice.learner, chosen, choice.learner_why)
    if choice.learner == "population":
        notes.decide("group_size", choice.group_size, choice.group_chosen, choice.group_why)  # type: ignore[arg-type]
    assembled = _assemble(hardware, ensemble, units, device, shape, layout, budget_gb, notes)
    return replace(
        assembled, learner=choice.learner, group_size=choice.group_size, folds=runs, units=units
    )


def _gpu_groups(
    hardware: Hardware,
    config: Config,
    shape: PolicyShape,
    runs: int,
    fitted: Callable[[int | None], _Processes],
    budget_gb: float,
    notes: _Notes,
) -> tuple[_Processes, LearnerChoice, int]:
    """Population groups on the GPU: as large as GPU memory allows (a fold's members at most),
    so each minibatch step is one large batched call; as many group processes at once as the
    GPUs' memory, the RAM and the CPUs (one each, for the envs) hold. On a GPU a group's time
    grows far slower than its size (bench_device.py), so fewer, larger groups win."""
    members = config.ensemble.size
    largest, size_why = gpu_group(hardware, config, shape)
    fixed = config.hardware.learner_memory_gb
    per_member_ram = max(fitted(1).memory_gb - fixed, 1e-6)
    by_ram_size = max(1, int((budget_gb - fixed) // per_member_ram))
    if by_ram_size < largest:
        largest = by_ram_size
        size_why += f"; RAM holds {by_ram_size} per group ({per_member_ram:.2f} GB per member)"
    per_fold = math.ceil(members / largest)
    size = math.ceil(members / per_fold)
    units = runs * per_fold
    rollout, batch = _gpu_rollout(config)
    process_gb = CUDA_CONTEXT_GB + size * gpu_member_gb(shape, rollout, batch)
    by_gpu = sum(_gpu_capacity(hardware, config, process_gb))
    process_ram = fixed + size * per_member_ram
    by_ram = int(budget_gb // process_ram)
    limits = {
        f"the run's {units} group(s) ({runs} fold(s) x {per_fold})": units,
        f"{hardware.usable_cpus} usable CPUs, one per group process (its envs)": hardware.usable_cpus,
        f"GPU memory at {process_gb:.2f} GB per group (CUDA context + {size} x "
        f"{gpu_member_gb(shape, rollout, batch):.3f} GB)": by_gpu,
        f"RAM at {process_ram:.2f} GB per group within {budget_gb:.1f} GB": by_ram,
    }
    configured = config.hardware.members_concurrent
    if configured != "auto":
        limits = {"hardware.members_concurrent": configured, **limits}
    slots = min(limits.values())
    if slots < 1:
        raise UserError(
            f"even one population group of {size} member(s) does not fit this machine: "
            + "; ".join(f"{what} holds {count}" for what, count in limits.items() if count < 1)
            + "\n  fix: lower hardware.group_size or hardware.target_rollout_steps, or set "
            "hardware.device=cpu"
        )
    layout = fitted(slots)
    layout = replace(
        layout,
        gpu_memory_gb=process_gb,
        gpu_assignment=_assign_gpus(hardware, config, slots, process_gb),
    )
    chosen = "config" if configured != "auto" else "auto"
    notes.decide(
        "members_concurrent",
        slots,
        chosen,
        "population groups on the GPU, the smallest of: "
        + "; ".join(f"{what} = {count}" for what, count in limits.items()),
    )
    group_why = f"{size_why}; {members} member(s) cut into {per_fold} group(s) per fold"
    group_chosen = "config" if config.hardware.group_size != "auto" else "auto"
    learner_why = (
        f"ensemble.learner={config.ensemble.learner}: a fold's members train in groups, "
        "batched on the GPU"
    )
    return layout, LearnerChoice("population", learner_why, size, group_why, group_chosen), units


def _fill_groups(
    layout: _Processes,
    choice: LearnerChoice,
    config: Config,
    run: tuple[int, int],
    fitted: Callable[[int | None], _Processes],
    budget_gb: float,
    notes: _Notes,
) -> tuple[_Processes, LearnerChoice, int]:
    """The population learner runs one process per group: the slots shrink to the groups the
    run forms (core.hardware.groups), so each group gets the CPUs of the slots it leaves empty;
    fewer slots hold larger groups, so this repeats until the count stays."""
    (runs, obs_dim), members = run, config.ensemble.size
    for _ in range(8):
        groups = runs * groups_per_fold(members, runs, layout.members, choice.group_size)
        if groups == runs * members and config.ensemble.learner == "auto":
            why = (
                f"the run's {groups} jobs fill {layout.members} slots one member each: a group "
                "of one has nothing to batch"
            )
            return (
                layout,
                LearnerChoice("separate", why, 1, "ensemble.learner separate", "auto"),
                groups,
            )
        if groups >= layout.members or config.hardware.members_concurrent != "auto":
            return layout, choice, groups
        why = notes.decisions["members_concurrent"].why
        layout = fitted(groups)
        notes.decide(
            "members_concurrent",
            groups,
            "auto",
            why.split("; then ")[0] + f"; then the {groups} group(s) the run forms "
            f"({runs} fold(s) x {groups // runs}, ensemble.learner population), one process each",
        )
        choice = choose_learner(
            config, members, obs_dim, layout.members, layout.memory_gb, budget_gb
        )
    return layout, choice, runs * groups_per_fold(members, runs, layout.members, choice.group_size)


class _Notes:
    """Collects the reason for every value, in the order decisions were made."""

    def __init__(self) -> None:
        self.decisions: dict[str, Decision] = {}
        self.extra: list[str] = []
        self.pace: float | None = None  # the measured steps/s the plan took, if any

    def decide(
        self, key: str, value: Any, chosen: Literal["auto", "config", "measured"], why: str
    ) -> Any:
        self.decisions[key] = Decision(value, chosen, why)
        return value

    def reasons(self) -> tuple[str, ...]:
        lines = [f"{key} = {d.value} ({d.chosen}): {d.why}" for key, d in self.decisions.items()]
        return (*lines, *self.extra)


def _configured(key: str, value: Any, section: str = "hardware") -> Decision:
    """A value fixed in the config: naming the key is the whole reason, and where to change it."""
    return Decision(value, "config", f"{section}.{key} in the config")


def _decision(
    key: str, value: Any, setting: Any, auto_why: str, section: str = "hardware"
) -> Decision:
    """For values derived together with others: `value` is the config's when `setting` is not auto."""
    if setting == "auto":
        return Decision(value, "auto", auto_why)
    return _configured(key, value, section)


def _choose_device(
    hardware: Hardware,
    config: Config,
    shape: PolicyShape,
    notes: _Notes,
    probe: DeviceProbe | None = None,
) -> str:
    requested = config.hardware.device
    gpu_source = hardware.sources.get("gpus") or "the machine lists none"
    if requested == "cpu":
        return notes.decide("device", "cpu", "config", "hardware.device=cpu")
    if requested == "cuda":
        if not hardware.gpus:
            raise UserError(
                f"hardware.device=cuda, but no GPU was found ({gpu_source})\n"
                "  fix: set hardware.device=auto or cpu, or check CUDA_VISIBLE_DEVICES and the driver"
            )
        why = "hardware.device=cuda" + _unstated_gpu_memory(hardware)
        return notes.decide("device", "cuda", "config", why)
    if not hardware.gpus:
        return notes.decide("device", "cpu", "auto", f"no GPU ({gpu_source})")
    group, group_why = gpu_group(hardware, config, shape)
    if probe is not None:
        return notes.decide("device", *_measured_device(probe, group, group_why))
    _, batch = _gpu_rollout(config)
    work = group * batch * shape.macs
    threshold = config.hardware.gpu_min_minibatch_macs
    counted = (
        f"a minibatch step on the GPU would do {group} member(s) ({group_why}) x batch {batch:,} x "
        f"{shape.macs:,} multiply-adds per observation (policy.extractor="
        f"{config.policy.extractor}) = {work:,}"
    )
    if work < threshold:
        return notes.decide(
            "device",
            "cpu",
            "auto",
            f"{counted}, below hardware.gpu_min_minibatch_macs={threshold:,}: so little work per "
            "step is bound by kernel-launch and transfer latency, and the CPU is faster "
            f"({MEASURED_ON}; set hardware.device=cuda to force)" + _unstated_gpu_memory(hardware),
        )
    return notes.decide(
        "device",
        "cuda",
        "auto",
        f"{counted} >= hardware.gpu_min_minibatch_macs={threshold:,}: enough work per step for "
        f"the GPU to win ({MEASURED_ON})" + _unstated_gpu_memory(hardware),
    )


def _measured_device(probe: DeviceProbe, group: int, group_why: str) -> tuple[str, Any, str]:
    """(device, 'measured', why) from --autotune's timing of a group on this machine."""
    where = f"--autotune timed a group on the CPU and on {probe.gpu} here ({probe.source})"
    if probe.crossing is None:
        largest = max(int(row["size"]) for row in probe.rows)
        return (
            "cpu",
            "measured",
            f"{where}: the CPU won up to the largest measured group ({largest})",
        )
    device = "cuda" if group >= probe.crossing else "cpu"
    return (
        device,
        "measured",
        (
            f"{where}: CUDA wins from groups of {probe.crossing}; this run's group: {group} "
            f"({group_why})"
        ),
    )


MEASURED_ON = "threshold measured on an NVIDIA H200 by bench/bench_device.py, 2026-12-04"


def _gpu_rollout(config: Config) -> tuple[int, int]:
    """(rollout steps, batch size) of one member on a GPU, as the layout will choose them."""
    if config.hardware.vec_env == "batch" and config.hardware.n_envs == "auto":
        n_envs = max(
            1, min(MAX_AUTO_BATCH_ENVS, config.hardware.target_rollout_steps // BATCH_N_STEPS)
        )
    elif config.hardware.n_envs != "auto":
        n_envs = config.hardware.n_envs
    else:
        n_envs = max(1, config.hardware.target_rollout_steps // MAX_N_STEPS)
    section = off_policy(config)
    if section is not None:  # one update's batch, from the replay buffer
        return n_envs * section.train_freq, section.batch_size
    rollout = n_envs * _n_steps(config, n_envs).value
    return rollout, _batch_size(config, rollout, "cuda").value


def gpu_member_gb(shape: PolicyShape, rollout: int, batch: int) -> float:
    """GPU memory of one member inside a group: weights, gradients and Adam moments, its rollout
    (moved to the GPU once per update) and a minibatch's activations."""
    on_device = rollout * (shape.obs_dim + shape.action_dim + 4) * FLOAT_BYTES / GIB
    activations = 3 * batch * (shape.obs_dim + 2 * sum(shape.hidden)) * FLOAT_BYTES / GIB
    return _model_gb(shape) + on_device + activations


def gpu_group(hardware: Hardware, config: Config, shape: PolicyShape) -> tuple[int, str]:
    """The members one GPU process would train at once: a fold's members in one population group
    (hardware.group_size when set), fewer when the largest GPU's free memory holds fewer; 1 when
    the run cannot train in groups."""
    members = config.ensemble.size
    why_not = separate_because(config, members, shape.obs_dim)
    if why_not is not None:
        return 1, f"separate learner: {why_not}"
    if config.hardware.group_size != "auto":
        return min(config.hardware.group_size, members), "hardware.group_size"
    rollout, batch = _gpu_rollout(config)
    per_member = gpu_member_gb(shape, rollout, batch)
    free = [g.free_memory_gb for g in hardware.gpus if g.free_memory_gb is not None]
    if not free:
        return members, f"a fold's {members} members (GPU memory not stated)"
    room = max(free) * (1 - config.hardware.gpu_memory_headroom) - CUDA_CONTEXT_GB
    by_memory = max(1, int(room // per_member))
    if by_memory >= members:
        return members, f"a fold's {members} members"
    return by_memory, (
        f"GPU memory, {room:.1f} GB free after headroom and the CUDA context / "
        f"{per_member:.3f} GB per member holds {by_memory} of a fold's {members}"
    )


def _unstated_gpu_memory(hardware: Hardware) -> str:
    """Said beside a GPU choice when no one stated the GPU's memory: it cannot be checked."""
    if all(gpu.free_memory_gb is not None for gpu in hardware.gpus):
        return ""
    return (
        f"; the GPU's memory is not stated ({hardware.sources.get('gpus', '')}), so the plan "
        "does not check that the members fit on it"
    )


@dataclass(frozen=True)
class _Processes:
    """One candidate arrangement of processes (learners, env workers, threads): each planned
    value keeps the reason it was chosen with it, so the plan's notes copy `decisions` rather
    than re-deriving why."""

    members: int
    decisions: dict[str, Decision]  # torch_threads ... batch_size, in the order the plan lists them
    memory_gb: float
    gpu_memory_gb: float
    gpu_assignment: tuple[int, ...]
    transition_gb: float = 0.0  # off-policy: one replay transition (core.hardware.replay)

    @property
    def torch_threads(self) -> int:
        return self.decisions["torch_threads"].value

    @property
    def blas_threads(self) -> int:
        return self.decisions["blas_threads"].value

    @property
    def env_workers(self) -> int:
        return self.decisions["env_workers"].value

    @property
    def envs_per_worker(self) -> int:
        return self.decisions["envs_per_worker"].value

    @property
    def n_envs(self) -> int:
        return self.decisions["n_envs"].value

    @property
    def n_steps(self) -> int:
        return self.decisions["n_steps"].value

    @property
    def batch_size(self) -> int:
        return self.decisions["batch_size"].value

    @property
    def rollout(self) -> int:
        return self.n_envs * self.n_steps

    @property
    def threads_per_member(self) -> int:
        return max(self.torch_threads, self.blas_threads) + self.env_workers * self.blas_threads


def _fit_members(
    hardware: Hardware,
    config: Config,
    ensemble: int,
    device: str,
    shape: PolicyShape,
    budget_gb: float,
    notes: _Notes,
    runs: int = 1,
) -> _Processes:
    """The most members (jobs: members x `runs` folds) at once whose layout fits CPUs, memory
    and GPU memory."""
    hw = config.hardware
    usable = hardware.usable_cpus
    if config.ensemble.mode == "fedavg" and ensemble > 1:
        return _fit_fedavg(hardware, config, ensemble, device, shape, budget_gb, notes)
    jobs = ensemble * runs
    work = (
        f"ensemble size {ensemble}"
        if runs == 1
        else f"{jobs} jobs ({ensemble} member(s) x {runs} folds)"
    )
    if hw.members_concurrent != "auto":
        wanted = min(hw.members_concurrent, jobs)
        if hw.members_concurrent > usable:
            raise UserError(
                f"hardware.members_concurrent={hw.members_concurrent} needs at least that many CPUs, "
                f"but {usable} are usable ({hardware.sources.get('usable_cpus', '')})\n"
                f"  fix: set hardware.members_concurrent to at most {usable}, or auto"
            )
        layout = _layout(wanted, hardware, config, device, shape)
        _check_fits(layout, hardware, config, budget_gb, configured=True)
        why = "hardware.members_concurrent" + (
            f" (capped at the {work})" if wanted < hw.members_concurrent else ""
        )
        notes.decide("members_concurrent", wanted, "config", why)
        return _adopt(layout, notes)

    # A batch-env member is one process: one CPU runs it. Measured on 2 CPUs (bench_launcher.py):
    # 2 members x 1 thread train an ensemble 1.9x faster than 1 member x 2 threads, whose second
    # thread a small MLP barely uses. A subproc member needs a learner and an env worker.
    min_member_cpus = 1 if usable == 1 or hw.vec_env == "batch" else 2
    by_cpu = max(1, usable // min_member_cpus)
    upper = min(jobs, by_cpu)
    layout = _layout(upper, hardware, config, device, shape)
    limits = [
        work,
        f"{usable} usable CPUs / {min_member_cpus} per member ({hw.vec_env} env) = {by_cpu}",
    ]
    if not _fits(layout, hardware, config, budget_gb):
        layout = _fit_lean(upper, hardware, config, device, shape, budget_gb)
        limits.append(
            f"memory: {layout.members} x {layout.memory_gb:.2f} GB per member within "
            f"{budget_gb:.1f} GB (available x (1 - hardware.memory_headroom))"
            + (f", GPU memory {layout.gpu_memory_gb:.2f} GB per member" if device == "cuda" else "")
        )
    notes.decide(
        "members_concurrent", layout.members, "auto", "the smallest of: " + "; ".join(limits)
    )
    return _adopt(layout, notes)


def _fit_fedavg(
    hardware: Hardware,
    config: Config,
    ensemble: int,
    device: str,
    shape: PolicyShape,
    budget_gb: float,
    notes: _Notes,
) -> _Processes:
    """fedavg: the members of a fold meet at a barrier every sync_steps, so all of them train at
    once; members that queued behind a slot would make the others wait out the barrier timeout."""
    configured = config.hardware.members_concurrent
    if configured != "auto" and configured < ensemble:
        raise UserError(
            f"hardware.members_concurrent={configured} is below the ensemble size {ensemble}, but "
            "ensemble.mode=fedavg trains every member of a fold at once (they average their "
            "weights at a barrier)\n"
            f"  fix: set hardware.members_concurrent to auto (or {ensemble}), or lower --ensemble"
        )
    layout = _layout(ensemble, hardware, config, device, shape)
    _check_fits(layout, hardware, config, budget_gb, configured=True, share_cpus=True)
    usable = hardware.usable_cpus
    shared = (
        f"; {ensemble} members share {usable} CPU(s): each trains slower, and a barrier waits "
        "for the slowest"
        if ensemble > usable
        else ""
    )
    notes.decide(
        "members_concurrent",
        ensemble,
        "auto",
        "ensemble.mode=fedavg: every member of a fold trains at once (they average their "
        "weights every ensemble.sync_steps)" + shared,
    )
    return _adopt(layout, notes)


MEASURED_KEYS = ("torch_threads", "n_envs", "n_steps", "batch_size")


def _measured(
    layout: _Processes,
    autotune: Autotune,
    hardware: Hardware,
    config: Config,
    device: str,
    shape: PolicyShape,
    budget_gb: float,
    notes: _Notes,
) -> _Processes:
    """The fastest probed candidate replaces the rules' torch threads, n_envs, n_steps and batch
    size (those left auto) when it fits the member's CPUs and the memory budget."""
    if device != "cpu" or config.hardware.vec_env != "batch":
        return layout  # the probe measures CPU learners with the batch env only
    fixed = {
        key: layout.decisions[key].value
        for key in MEASURED_KEYS
        if layout.decisions[key].chosen == "config"
    }
    cpus = max(1, hardware.usable_cpus // layout.members)
    best = autotune.best(cpus, fixed)
    if best is None:
        notes.extra.append(
            f"autotune ({autotune.source}): no measured candidate fits {cpus} CPU(s) per member "
            "and the configured values; the rules chose"
        )
        return layout
    rollout = best.candidate.n_envs * best.candidate.n_steps
    decisions = dict(layout.decisions)
    rule = {key: layout.decisions[key].value for key in MEASURED_KEYS}
    why = (
        f"measured by --autotune on this machine: {best.steps_per_s:,.0f} env-steps/s, the "
        f"fastest of {len(autotune.measurements)} candidates ({autotune.source})"
    )
    for key in MEASURED_KEYS:
        if key not in fixed:
            decisions[key] = Decision(getattr(best.candidate, key), "measured", why)
    decisions["envs_per_worker"] = Decision(
        decisions["n_envs"].value, "auto", "the learner process holds every env"
    )
    memory = _member_memory_gb(config, shape, layout.env_workers, rollout, layout.n_envs)
    measured = _Processes(layout.members, decisions, memory, 0.0, ())
    if not _fits(measured, hardware, config, budget_gb):
        notes.extra.append(f"autotune's fastest candidate does not fit in memory: kept {rule}")
        return layout
    notes.decisions.update(decisions)
    notes.pace = best.steps_per_s
    return measured


def _adopt(layout: _Processes, notes: _Notes) -> _Processes:
    """The fitted layout's decisions become the plan's, once a fixed batch size is known to fit."""
    _check_batch(layout)
    notes.decisions.update(layout.decisions)
    return layout


def _fit_lean(
    upper: int,
    hardware: Hardware,
    config: Config,
    device: str,
    shape: PolicyShape,
    budget_gb: float,
) -> _Processes:
    """When memory binds: the most members a worker-less layout allows, then the most env workers
    that still fit (more members beat more workers per member for an ensemble's throughput)."""
    lean = _layout(1, hardware, config, device, shape, max_workers=0)
    by_memory = int(budget_gb // lean.memory_gb)
    by_gpu = sum(_gpu_capacity(hardware, config, lean.gpu_memory_gb)) if device == "cuda" else upper
    members = max(1, min(upper, by_memory, by_gpu))
    best = _layout(members, hardware, config, device, shape, max_workers=0)
    _check_fits(best, hardware, config, budget_gb, configured=False)  # even one member may not fit
    if config.hardware.env_workers != "auto":
        return best
    low, high = 0, _layout(members, hardware, config, device, shape).env_workers
    while low < high:  # memory grows with the worker count: binary search the largest that fits
        middle = (low + high + 1) // 2
        candidate = _layout(members, hardware, config, device, shape, max_workers=middle)
        if _fits(candidate, hardware, config, budget_gb):
            low, best = middle, candidate
        else:
            high = middle - 1
    return best


def _layout(
    members: int,
    hardware: Hardware,
    config: Config,
    device: str,
    shape: PolicyShape,
    max_workers: int | None = None,
) -> _Processes:
    """Split usable CPUs evenly between `members`, then size one member's processes and batches."""
    hw = config.hardware
    cpus = max(1, hardware.usable_cpus // members)
    torch_threads = _torch_threads(config, device, members, cpus)
    blas = _blas_threads(config)
    if hw.vec_env == "batch":
        workers, per_worker, n_envs = _batch_env_layout(config)
    else:
        learner = max(torch_threads.value, blas.value)
        spare_workers = max(0, (cpus - learner) // blas.value)
        worker_cap = min(spare_workers, hw.max_env_workers_per_member)
        if max_workers is not None:
            worker_cap = min(worker_cap, max_workers)
        workers, per_worker, n_envs = _env_layout(config, worker_cap)
    decisions = {
        "torch_threads": torch_threads,
        "blas_threads": blas,
        "env_workers": workers,
        "envs_per_worker": per_worker,
        "n_envs": n_envs,
        **_learning_steps(config, n_envs.value, device, shape),
    }
    rollout = n_envs.value * decisions["n_steps"].value
    memory = _member_memory_gb(config, shape, workers.value, rollout, n_envs.value)
    batch = decisions["batch_size"].value
    gpu_memory = _gpu_memory_gb(shape, batch) if device == "cuda" else 0.0
    assignment = _assign_gpus(hardware, config, members, gpu_memory) if device == "cuda" else ()
    transition = replay.replay_gb(shape.obs_dim, shape.action_dim, 1)
    return _Processes(members, decisions, memory, gpu_memory, assignment, transition)


def _learning_steps(
    config: Config, n_envs: int, device: str, shape: PolicyShape
) -> dict[str, Decision]:
    """PPO: n_steps per env and the minibatch; SAC/TQC: steps collected between updates, the
    updates, their batch and the replay buffer (core.hardware.replay)."""
    section = off_policy(config)
    if section is None:
        n_steps = _n_steps(config, n_envs)
        return {
            "n_steps": n_steps,
            "batch_size": _batch_size(config, n_envs * n_steps.value, device),
        }
    steps, gradient_why, auto = replay.gradient_steps(config, section, n_envs)
    buffer = replay.replay_buffer(config, section, n_envs, shape.obs_dim, shape.action_dim)
    collect, collect_why = replay.collect_steps(config, section)
    batch, batch_why = replay.update_batch(config, section)
    return {
        "n_steps": Decision(collect, "config", collect_why),
        "batch_size": Decision(batch, "config", batch_why),
        "gradient_steps": Decision(steps, "auto" if auto else "config", gradient_why),
        "replay_buffer": Decision(buffer[0], "auto", buffer[1]),
    }


def _torch_threads(config: Config, device: str, members: int, cpus: int) -> Decision:
    """The learner's share of a member's `cpus`: it depends on who else needs them."""
    if config.hardware.torch_threads != "auto":
        return _configured("torch_threads", config.hardware.torch_threads)
    if device == "cuda":
        why = "on the GPU the learner's CPU threads only feed kernels"
        return Decision(1 if cpus < 8 else 2, "auto", why)
    share = f"{members} process(es) at once get {cpus} CPU(s) each; "
    if config.hardware.vec_env == "batch":  # no env processes to feed: the learner gets the CPUs
        why = (
            f"{share}the batch env steps inside the learner, so the learner takes them all (at most "
            f"{MAX_AUTO_BATCH_TORCH_THREADS}: small MLPs stop scaling beyond that)"
        )
        return Decision(min(MAX_AUTO_BATCH_TORCH_THREADS, cpus), "auto", why)
    why = (
        f"{share}a quarter goes to the learner (at most {MAX_AUTO_TORCH_THREADS}: small MLPs stop "
        "scaling beyond that), the rest to env workers"
    )
    return Decision(min(MAX_AUTO_TORCH_THREADS, max(1, cpus // 4)), "auto", why)


def _blas_threads(config: Config) -> Decision:
    if config.hardware.blas_threads != "auto":
        return _configured("blas_threads", config.hardware.blas_threads)
    why = (
        "env math is element-wise numpy that BLAS threads do not speed up; one per process keeps "
        "env workers x BLAS pools from exploding the thread count"
    )
    return Decision(1, "auto", why)


def _batch_env_layout(config: Config) -> tuple[Decision, Decision, Decision]:
    """(env_workers 0, envs_per_worker = n_envs, n_envs): every env steps as arrays inside the
    learner process."""
    hw = config.hardware
    if hw.env_workers not in ("auto", 0) or hw.envs_per_worker != "auto":
        raise UserError(
            "hardware.env_workers / hardware.envs_per_worker only apply to "
            "hardware.vec_env=subproc: the batch env steps every env inside the learner\n"
            "  fix: set hardware.vec_env=subproc (or --vec-env subproc), or set them back to auto"
        )
    if hw.n_envs != "auto":
        n_envs = hw.n_envs
    else:
        n_envs = max(1, min(MAX_AUTO_BATCH_ENVS, hw.target_rollout_steps // BATCH_N_STEPS))
    workers_why = "hardware.vec_env=batch: all envs step as numpy arrays inside the learner"
    n_envs_why = (
        f"hardware.target_rollout_steps={hw.target_rollout_steps:,} / {BATCH_N_STEPS} steps "
        f"per env (a GAE horizon), at most {MAX_AUTO_BATCH_ENVS}"
    )
    return (
        _decision("env_workers", 0, hw.env_workers, workers_why),
        _decision(
            "envs_per_worker", n_envs, hw.envs_per_worker, "the learner process holds every env"
        ),
        _decision("n_envs", n_envs, hw.n_envs, n_envs_why),
    )


def _env_layout(config: Config, worker_cap: int) -> tuple[Decision, Decision, Decision]:
    """(env_workers, envs_per_worker, n_envs) for SubprocVecEnv; envs step in the learner when
    there are no workers. The three are derived together, so any two of them may be configured."""
    hw = config.hardware
    if hw.n_envs != "auto":
        n_envs = hw.n_envs
        if hw.env_workers != "auto":
            workers = hw.env_workers
        else:
            workers = max(
                (d for d in range(1, min(worker_cap, n_envs) + 1) if n_envs % d == 0), default=0
            )
        if workers and n_envs % workers:
            raise UserError(
                f"hardware.n_envs={n_envs} cannot be split evenly over hardware.env_workers={workers}\n"
                f"  fix: make n_envs a multiple of env_workers, or set one of them to auto"
            )
        per_worker = n_envs // max(workers, 1)
        if hw.envs_per_worker != "auto" and hw.envs_per_worker != per_worker:
            raise UserError(
                f"hardware.n_envs={n_envs} disagrees with env_workers={workers} x "
                f"envs_per_worker={hw.envs_per_worker}\n  fix: set at most two of the three"
            )
        per_worker_why = "n_envs / env_workers"
    else:
        workers = worker_cap if hw.env_workers == "auto" else hw.env_workers
        per_worker = AUTO_ENVS_PER_WORKER if hw.envs_per_worker == "auto" else hw.envs_per_worker
        n_envs = max(workers, 1) * per_worker
        per_worker_why = "SB3's SubprocVecEnv runs one env per worker process"
    if workers == 0:
        workers_why = "no CPU left beside the learner: envs step inside the learner process"
    else:
        workers_why = "the member's remaining CPUs, one single-threaded process each"
        if workers == hw.max_env_workers_per_member:
            workers_why += f" (capped by hardware.max_env_workers_per_member={workers})"
    return (
        _decision("env_workers", workers, hw.env_workers, workers_why),
        _decision("envs_per_worker", per_worker, hw.envs_per_worker, per_worker_why),
        _decision("n_envs", n_envs, hw.n_envs, "env_workers x envs_per_worker"),
    )


def _n_steps(config: Config, n_envs: int) -> Decision:
    """Steps per env per rollout: hardware.target_rollout_steps spread over the envs, and a length
    that a fixed ppo.batch_size divides."""
    ppo = config.ppo
    if ppo.n_steps != "auto":
        return _configured("n_steps", ppo.n_steps, section="ppo")
    target = config.hardware.target_rollout_steps
    raw = target / n_envs
    n_steps = int(min(MAX_N_STEPS, max(MIN_N_STEPS, 2 ** round(math.log2(max(raw, 1))))))
    divisible = ""
    if ppo.batch_size != "auto":
        # A fixed batch size must divide the rollout: step n_steps in units that keep it divisible.
        unit = ppo.batch_size // math.gcd(ppo.batch_size, n_envs)
        least = max(n_steps, math.ceil(MIN_MINIBATCHES * ppo.batch_size / n_envs))
        n_steps = unit * math.ceil(least / unit)
        divisible = f"; a multiple that ppo.batch_size={ppo.batch_size} divides"
    why = (
        f"hardware.target_rollout_steps={target:,} / n_envs, rounded to a power of two within "
        f"[{MIN_N_STEPS}, {MAX_N_STEPS}] (rollout = {n_envs * n_steps:,} steps){divisible}"
    )
    return Decision(n_steps, "auto", why)


def _batch_size(config: Config, rollout: int, device: str) -> Decision:
    """A GPU can take far larger minibatches than a CPU before a step stops paying for itself."""
    if config.ppo.batch_size != "auto":
        return _configured("batch_size", config.ppo.batch_size, section="ppo")
    ceiling = 32768 if device == "cuda" else 4096
    wanted = min(ceiling, max(64, rollout // 8))
    batch = max(d for d in _divisors(rollout) if d <= wanted and rollout // d >= MIN_MINIBATCHES)
    why = (
        f"the largest divisor of the rollout ({rollout:,}) up to rollout/8 (capped at "
        f"{ceiling:,} on {device}) that leaves >= {MIN_MINIBATCHES} "
        f"minibatches: {rollout // batch} per epoch"
    )
    return Decision(batch, "auto", why)


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def _rollout_gb(shape: PolicyShape, rollout: int) -> float:
    # SB3's RolloutBuffer: obs + actions + 6 float32 scalars per transition; get() makes a flattened copy.
    per_step = (shape.obs_dim + shape.action_dim + 6) * FLOAT_BYTES
    return 2 * rollout * per_step / GIB


def _model_gb(shape: PolicyShape) -> float:
    return 4 * shape.params * FLOAT_BYTES / GIB  # weights, gradients, two Adam moments


def _member_memory_gb(
    config: Config, shape: PolicyShape, workers: int, rollout: int, n_envs: int
) -> float:
    hw = config.hardware
    section = off_policy(config)
    if section is None:
        learning = _rollout_gb(shape, rollout) + _model_gb(shape)
    else:  # the replay buffer; actor, critics and target critics (about 3 PPO-sized networks)
        transitions = stored_transitions(section, config.ppo.total_timesteps, n_envs)
        learning = replay.replay_gb(shape.obs_dim, shape.action_dim, transitions)
        learning += OFF_POLICY_NETWORKS * _model_gb(shape)
    return hw.learner_memory_gb + learning + workers * hw.worker_memory_gb


def _gpu_memory_gb(shape: PolicyShape, batch: int) -> float:
    activations_gb = 3 * batch * (shape.obs_dim + 2 * sum(shape.hidden)) * FLOAT_BYTES / GIB
    return CUDA_CONTEXT_GB + _model_gb(shape) + activations_gb


def _gpu_capacity(hardware: Hardware, config: Config, per_member_gb: float) -> list[int]:
    headroom = 1 - config.hardware.gpu_memory_headroom
    return [
        UNSTATED_GPU_ROOM
        if g.free_memory_gb is None
        else int(g.free_memory_gb * headroom // per_member_gb)
        for g in hardware.gpus
    ]


def _assign_gpus(
    hardware: Hardware, config: Config, members: int, per_member_gb: float
) -> tuple[int, ...]:
    """GPU index for each concurrent member slot, filling the GPU with the most room first."""
    room = _gpu_capacity(hardware, config, per_member_gb)
    assignment: list[int] = []
    for _ in range(members):
        best = max(range(len(room)), key=lambda i: room[i], default=None)
        if best is None or room[best] <= 0:
            break
        room[best] -= 1
        assignment.append(hardware.gpus[best].index)
    return tuple(assignment)


def _fits(layout: _Processes, hardware: Hardware, config: Config, budget_gb: float) -> bool:
    return _misfit(layout, hardware, config, budget_gb, configured=False) is None


def _check_fits(
    layout: _Processes,
    hardware: Hardware,
    config: Config,
    budget_gb: float,
    configured: bool,
    share_cpus: bool = False,
) -> None:
    problem = _misfit(layout, hardware, config, budget_gb, configured, share_cpus)
    if problem is not None:
        raise UserError(problem)


def _misfit(
    layout: _Processes,
    hardware: Hardware,
    config: Config,
    budget_gb: float,
    configured: bool,
    share_cpus: bool = False,
) -> str | None:
    """What does not fit (CPUs, RAM, GPU memory) and which keys to change; None when all fit.
    `share_cpus`: more members than CPUs is allowed (fedavg needs them all at once)."""
    threads = layout.members * layout.threads_per_member
    if threads > max(hardware.usable_cpus, layout.members if share_cpus else 0):
        return (
            f"the configured layout oversubscribes the CPUs: {layout.members} member(s) x "
            f"{layout.threads_per_member} threads (max(torch_threads={layout.torch_threads}, "
            f"blas_threads={layout.blas_threads}) + env_workers={layout.env_workers} x blas_threads) "
            f"= {threads} > {hardware.usable_cpus} usable CPUs\n"
            "  fix: lower hardware.members_concurrent, env_workers, torch_threads or blas_threads, "
            "or set them to auto"
        )
    if layout.members * layout.memory_gb > budget_gb and "replay_buffer" in layout.decisions:
        return _replay_misfit(layout, hardware, config, budget_gb, configured)
    if layout.members * layout.memory_gb > budget_gb:
        who = f"{layout.members} member(s)" if configured else "even one member"
        return (
            f"{who} need(s) ~{layout.members * layout.memory_gb:.2f} GB of RAM "
            f"({layout.memory_gb:.2f} GB each: learner, {layout.env_workers} env workers, rollout of "
            f"{layout.rollout:,} steps), but only {budget_gb:.2f} GB is usable "
            f"({hardware.memory_available_gb:.2f} GB available x (1 - hardware.memory_headroom))\n"
            "  fix: lower hardware.members_concurrent, hardware.env_workers, "
            "hardware.target_rollout_steps or env.window"
        )
    if hardware.gpus and layout.gpu_memory_gb and len(layout.gpu_assignment) < layout.members:
        free = ", ".join(
            f"{g.name}: {g.free_memory_gb:.1f} GB free" for g in hardware.gpus if g.free_memory_gb
        )
        return (
            f"{layout.members} member(s) need ~{layout.gpu_memory_gb:.2f} GB of GPU memory each, "
            f"which does not fit ({free}; headroom {config.hardware.gpu_memory_headroom:.0%})\n"
            "  fix: lower hardware.members_concurrent or ppo.batch_size, or set hardware.device=cpu"
        )
    return None


def _replay_misfit(
    layout: _Processes, hardware: Hardware, config: Config, budget_gb: float, configured: bool
) -> str:
    """An off-policy member whose replay buffer does not fit: its size, and the buffer that would."""
    name = config.training.algorithm
    buffer = layout.decisions["replay_buffer"]
    transitions = buffer.value
    others_gb = layout.memory_gb - transitions * layout.transition_gb
    room_gb = budget_gb / layout.members - others_gb
    fits = max(0, int(room_gb / layout.transition_gb)) // layout.n_envs * layout.n_envs
    who = f"{layout.members} member(s) at once" if configured else "even one member"
    smaller = (
        f"set {name}.buffer_size to at most {fits:,}"
        if fits >= layout.n_envs
        else "the rest of a member does not fit either: free memory"
    )
    return (
        f"{who} need(s) ~{layout.members * layout.memory_gb:.2f} GB of RAM, "
        f"{layout.memory_gb:.2f} GB each, most of it the replay buffer: {buffer.why}; only "
        f"{budget_gb:.2f} GB is usable ({hardware.memory_available_gb:.2f} GB available x "
        "(1 - hardware.memory_headroom)). Refused before any job: SB3 would fill it step by step "
        "and the machine would swap or kill the run hours in\n"
        f"  fix: {smaller}, or lower env.window (each transition holds two observations)"
        + (", or hardware.members_concurrent" if configured else "")
    )


def _check_batch(layout: _Processes) -> None:
    """A fixed ppo.batch_size must split the rollout it was fitted to (an auto one always does)."""
    rollout = layout.rollout
    batch = layout.batch_size
    if "replay_buffer" in layout.decisions:
        return  # off-policy: batches are drawn from the replay buffer, not cut from a rollout
    if rollout % batch == 0 and rollout // batch >= MIN_MINIBATCHES:
        return
    valid = [d for d in _divisors(rollout) if rollout // d >= MIN_MINIBATCHES]
    nearest = sorted(valid, key=lambda d: abs(d - batch))[:3]
    raise UserError(
        f"ppo.batch_size={batch} does not fit the rollout of n_envs={layout.n_envs} x "
        f"n_steps={layout.n_steps} = {rollout:,} steps: it must divide the rollout and leave at "
        f"least {MIN_MINIBATCHES} minibatches\n"
        f"  fix: use ppo.batch_size={' or '.join(map(str, sorted(nearest)))}, or auto"
    )


def _assemble(
    hardware: Hardware,
    ensemble: int,
    units: int,
    device: str,
    shape: PolicyShape,
    layout: _Processes,
    budget_gb: float,
    notes: _Notes,
) -> Plan:
    """The plan from the fitted layout; `units` are the processes the run needs (jobs or groups)."""
    threads_in_use = layout.members * layout.threads_per_member
    waves = math.ceil(units / layout.members)
    if waves > 1:
        notes.extra.append(f"{units} processes run in {waves} waves of up to {layout.members}")
    notes.extra.append(
        f"policy: {shape.extractor}, obs_dim {shape.obs_dim:,} (env.window x assets x "
        f"features + portfolio state), {shape.params:,} parameters"
    )
    return Plan(
        ensemble_size=ensemble,
        members_concurrent=layout.members,
        waves=waves,
        device=device,
        gpu_assignment=layout.gpu_assignment,
        env_workers=layout.env_workers,
        envs_per_worker=layout.envs_per_worker,
        n_envs=layout.n_envs,
        n_steps=layout.n_steps,
        rollout_size=layout.rollout,
        batch_size=layout.batch_size,
        n_minibatches=layout.rollout // layout.batch_size,
        torch_threads=layout.torch_threads,
        blas_threads=layout.blas_threads,
        threads_per_member=layout.threads_per_member,
        threads_in_use=threads_in_use,
        usable_cpus=hardware.usable_cpus,
        memory_per_member_gb=layout.memory_gb,
        memory_budget_gb=budget_gb,
        gpu_memory_per_member_gb=layout.gpu_memory_gb,
        obs_dim=shape.obs_dim,
        policy_params=shape.params,
        reasons=notes.reasons(),
        notes=tuple(notes.extra),
        decisions=notes.decisions,
        measured_steps_per_s=notes.pace,
    )
