"""The plan a command trains with: made once from the store's exact shape and the cached autotune
probe (or a fresh one with --autotune), or, on --resume, the run's own plan.json."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.algorithms import off_policy
from core.errors import UserError

if TYPE_CHECKING:
    import argparse

    from core.config import Config
    from core.features.store import FeatureStore
    from core.hardware.machine import Hardware
    from core.hardware.planner import Plan
    from training.launcher.profile import ClusterProfile
    from training.run.files import RunFiles


def job_feature_names(config: Config, store: FeatureStore) -> list[str]:
    """The columns a job's observation holds: the store's, then any regime columns its fold's
    store adds (features.regime=hmm), so the plan sizes the network the members build."""
    if config.features.regime == "none":
        return store.feature_names
    from core.features.regime import regime_names

    return [*store.feature_names, *regime_names(config.features.regime_states)]


def plan_for_store(
    args: argparse.Namespace,
    config: Config,
    hardware: Hardware,
    store: FeatureStore,
    profile: ClusterProfile | None,
    members: int | None,
) -> tuple[Plan, Any]:
    """The plan with the store's shape (and, on this machine, the run's folds: its jobs or groups
    are what run at once), then with the autotune probe if there is one."""
    from core.hardware.planner import plan

    shape = {
        "n_assets": len(store.assets),
        "feature_names": job_feature_names(config, store),
        "folds": None if profile else fold_count(config, store),
    }
    resource_plan = plan(hardware, config, members, **shape)
    if off_policy(config) is not None:  # the probes time PPO's learner: not this one
        if args.autotune:
            raise UserError(
                f"--autotune times PPO's rollouts and updates; training.algorithm="
                f"{config.training.algorithm} learns off-policy, so its measurements would not "
                "apply\n  fix: drop --autotune (the plan's rules size the off-policy learner)"
            )
        return resource_plan, None
    device = device_measurements(args, config, hardware, store, bool(profile), resource_plan)
    if device is not None:
        resource_plan = plan(hardware, config, members, **shape, device_probe=device)
    measured = measurements(args, config, hardware, store, bool(profile), resource_plan)
    if measured is not None:
        resource_plan = plan(
            hardware, config, members, **shape, autotune=measured, device_probe=device
        )
    return resource_plan, measured


DEVICE_PROBE_SIZES = (1, 8, 32)  # group sizes --autotune times on a GPU machine


def device_measurements(
    args: argparse.Namespace,
    config: Config,
    hardware: Hardware,
    store: FeatureStore,
    cluster: bool,
    rule: Plan,
) -> Any:
    """On a machine with a GPU: the cached timing of a group on the CPU and on CUDA (None if
    there is none); with --autotune, a fresh one first (bench/bench_device.py's measurement)."""
    from core.hardware.autotune import device_cache_file, load_device_probe

    if not hardware.gpus or args.hardware or cluster or config.hardware.vec_env != "batch":
        return None
    _, key, _ = _probe_identity(config, hardware, store)
    gpu = hardware.gpus[0].name
    path = device_cache_file(config, key, gpu)
    if args.autotune:
        _fresh_device_probe(config, hardware, store, rule, path, key, gpu)
    return load_device_probe(path)


def _fresh_device_probe(
    config: Config,
    hardware: Hardware,
    store: FeatureStore,
    rule: Plan,
    path: Path,
    key: str,
    gpu: str,
) -> None:
    from core.hardware.autotune import DeviceProbe, machine_name, save_autotune
    from training.population.device_timing import crossing, time_groups

    shape = (rule.n_envs, rule.n_steps, rule.batch_size)
    print(
        f"Autotune: timing a population group of {', '.join(map(str, DEVICE_PROBE_SIZES))} "
        f"member(s) on the CPU and on {gpu} (n_envs {shape[0]} x n_steps {shape[1]}, batch "
        f"{shape[2]}); a minute or more",
        flush=True,
    )

    def report(timing: Any) -> None:
        print(
            f"  {timing.device:<4} group of {timing.size:<3} {timing.seconds_per_iteration:7.2f} s "
            "per rollout + update",
            flush=True,
        )

    threads = min(16, hardware.usable_cpus)
    cpu = time_groups(config, store, "cpu", DEVICE_PROBE_SIZES, shape, threads, report=report)
    cuda = time_groups(config, store, "cuda", DEVICE_PROBE_SIZES, shape, 2, report=report)
    rows = tuple(
        {"size": c.size, "cpu_s": c.seconds_per_iteration, "cuda_s": g.seconds_per_iteration}
        for c, g in zip(cpu, cuda, strict=True)
    )
    found = crossing(cpu, cuda)
    save_autotune(path, DeviceProbe(key, machine_name(hardware.usable_cpus), gpu, found, rows))
    verdict = f"CUDA wins from groups of {found}" if found else "the CPU wins at every size"
    print(f"Autotune: {verdict}; cached in {path}", flush=True)


def fold_count(config: Config, store: FeatureStore) -> int:
    """How many walk-forward folds the run has (the split is cheap: bar times only)."""
    from core.features.resolved import with_inferred
    from core.folds import split

    return len(split(store.timestamps, store.bar_ns, with_inferred(config, store.meta)))


def measurements(
    args: argparse.Namespace,
    config: Config,
    hardware: Hardware,
    store: FeatureStore,
    cluster: bool,
    rule: Plan,
) -> Any:
    """The cached --autotune probe for this machine, config and observation (None if there is
    none); with --autotune, a fresh probe first."""
    from core.errors import UserError

    if args.hardware or cluster:
        if args.autotune:
            raise UserError(
                "--autotune times training on this machine, but the plan is for "
                + ("--hardware " + str(args.hardware) if args.hardware else "a SLURM allocation")
                + "\n  fix: run --autotune on the machine itself (on SLURM: inside a job on a "
                "node of the partition), or drop --autotune"
            )
        return None
    if not args.autotune:
        return cached_probe(config, hardware, store)
    if rule.device == "cuda" and config.hardware.vec_env == "batch" and hardware.gpus:
        return None  # the learner is on the GPU: the device probe above timed it
    if config.hardware.vec_env != "batch" or rule.device != "cpu":
        raise UserError(
            "--autotune times CPU learners with the batch env, but this plan has "
            f"hardware.vec_env={config.hardware.vec_env}, device {rule.device}\n"
            "  fix: drop --autotune, or set hardware.vec_env=batch and hardware.device=cpu"
        )
    return _fresh_probe(config, hardware, store, rule)


def _fresh_probe(config: Config, hardware: Hardware, store: FeatureStore, rule: Plan) -> Any:
    from core.hardware.autotune import load_autotune, save_autotune
    from training.member.autotune import probe

    path, key, machine = _probe_identity(config, hardware, store)
    cpus = max(1, hardware.usable_cpus // rule.members_concurrent)
    print(
        f"Autotune: timing PPO training ({config.policy.extractor}) for a few settings, "
        f"{cpus} CPU(s) per member; seconds each",
        flush=True,
    )

    def report(candidate: Any, steps_per_s: float) -> None:
        print(
            f"  {candidate.torch_threads} torch thread(s), n_envs {candidate.n_envs} x n_steps "
            f"{candidate.n_steps}, batch {candidate.batch_size}: {steps_per_s:,.0f} env-steps/s",
            flush=True,
        )

    save_autotune(path, probe(config, store, rule, cpus, key, machine, report))
    print(f"Autotune: cached in {path}; plans on this machine use it from now on")
    return load_autotune(path)


def _probe_identity(
    config: Config, hardware: Hardware, store: FeatureStore
) -> tuple[Path, str, str]:
    from core.hardware.autotune import autotune_key, cache_file, machine_name
    from core.hardware.planner import estimate_policy_shape

    machine = machine_name(hardware.usable_cpus)
    shape = estimate_policy_shape(config, len(store.assets), store.feature_names)
    key = autotune_key(config, machine, shape.obs_dim, len(store.assets))
    return cache_file(config, key), key, machine


def cached_probe(config: Config, hardware: Hardware, store: FeatureStore) -> Any:
    from core.hardware.autotune import load_autotune

    return load_autotune(_probe_identity(config, hardware, store)[0])


def saved_plan(files: RunFiles, hardware: Hardware) -> Plan | None:
    """The run's plan.json when this is the machine it was made for (same usable CPUs and GPUs):
    a resumed run keeps its plan. JSON only, so the thread limits can follow it before numpy."""
    from training.run.records import read_record

    if not files.plan.exists():
        return None
    saved = read_record(files.plan, "the run's plan")
    made_for = saved["hardware"]
    if made_for.get("usable_cpus") != hardware.usable_cpus:
        return None
    if len(made_for.get("gpus", [])) != len(hardware.gpus):
        return None
    return plan_from_json(saved["plan"])


def replan(
    files: RunFiles, config: Config, hardware: Hardware, profile: ClusterProfile | None
) -> tuple[Plan, str]:
    """A resumed run on another machine: planned again with its store's exact shape (and this
    machine's autotune probe); returns the plan and a sentence saying why."""
    from core.features.store import FeatureStore
    from core.hardware.planner import plan
    from training.run.records import read_record

    document = read_record(files.jobs, "the run's job list")
    store = FeatureStore.attach(document["store"])
    folds = len({job["fold"]["index"] for job in document["jobs"]})
    shape = {
        "n_assets": len(store.assets),
        "feature_names": job_feature_names(config, store),
        "folds": None if profile else folds,
    }
    measured = None if profile else cached_probe(config, hardware, store)
    resource_plan = plan(hardware, config, 1 if profile else None, **shape, autotune=measured)
    saved = read_record(files.plan, "the run's plan")["hardware"] if files.plan.exists() else None
    was = (
        f"made for {saved.get('usable_cpus')} CPU(s) and {len(saved.get('gpus', []))} GPU(s)"
        if saved
        else "missing"
    )
    now = f"{hardware.usable_cpus} CPU(s) and {len(hardware.gpus)} GPU(s)"
    return (
        resource_plan,
        f"planned again with its store's shape ({files.plan.name} {was}; {now} here)",
    )


def plan_from_json(document: dict[str, Any]) -> Plan:
    """A Plan as `Plan.to_json` wrote it."""
    from core.hardware.planner import Decision, Plan

    values = {f.name: document[f.name] for f in fields(Plan) if f.name in document}
    for name in ("gpu_assignment", "reasons", "notes"):
        values[name] = tuple(values.get(name, ()))
    values["decisions"] = {k: Decision(**v) for k, v in values.get("decisions", {}).items()}
    return Plan(**values)
