"""Gather a run's job results: per-fold and stitched out-of-sample metrics, saved beside the run.

The agent of a fold is the ensemble: its members' actions combined on every bar and traded
through the market model (`training.post.ensemble` walks it); each member is also judged alone, so
the report can show the spread. Test windows are stitched in fold order into one out-of-sample
series, judged against the baselines on the same bars and costs. The Deflated Sharpe Ratio
counts every checkpoint of every member evaluated on validation data as a trial, because each
one was a candidate for the reported model. Members that failed are left out and listed.
Rendering (report.md, plots) is `training.post.report`'s work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.atomic import replacing, write_json
from core.config import Config
from core.envs.market import min_trade_of
from core.errors import UserError
from core.evaluation import metrics
from core.evaluation.baselines import BASELINES
from core.evaluation.judge import AGENT, annualisation_of
from core.evaluation.metrics import Annualisation
from core.evaluation.positions import describe_position, position_spread
from core.folds import coverage
from training.run.files import RunFiles
from training.run.folder import load_run, run_config, run_store
from training.run.job import Job, jobs_by_fold
from training.run.records import read_fused_record, read_job_result, read_record
from training.run.tracks import SERIES, load_tracks
from training.views.folds import coverage_document

STRATEGIES = (AGENT, *BASELINES)
# ensemble.mode fedavg: the agent is the fused model; these run beside it on the same bars.
MEMBERS_ENSEMBLE = "members_ensemble"  # mean (or median) action of the members' own checkpoints
BEST_MEMBER = "best_member"  # per fold, the member with the best validation score


@dataclass(frozen=True)
class FoldResult:
    index: int
    frame: pd.DataFrame  # one row per test bar: timestamp + <strategy>.<series> (the ensemble)
    members: list[dict[str, Any]]  # each finished member's result.json
    member_returns: pd.DataFrame  # one column per ensemble member (NaN where it did not finish)
    fused: dict[str, Any] | None = None  # fused.json: rounds and the round kept (fedavg)
    best_member: int = 0  # the member with the best validation score
    weights: np.ndarray | None = None  # the agent's target weights per test bar [bars, assets]
    # Each finished member's own target weights on the test bars (runs before decisions: none).
    member_weights: dict[int, np.ndarray] = field(default_factory=dict)
    members_ensemble_weights: np.ndarray | None = None  # fedavg: beside the fused model


@dataclass(frozen=True)
class RunResults:
    summary: dict[str, Any]  # metrics.json
    oos: pd.DataFrame  # stitched test bars of every fold (oos_returns.csv has their returns)
    fold_metrics: list[dict[str, Any]]  # folds/fold_XX/metrics.json
    folds: list[FoldResult]
    member_returns: pd.DataFrame  # stitched test returns of each member alone (NaN: not run)


def gather_results(run_dir: Path) -> RunResults:
    """Write metrics.json, per-fold metrics and oos_returns.csv into `run_dir`; return them."""
    files = RunFiles(run_dir)
    config = run_config(run_dir)
    store = run_store(run_dir)
    jobs = load_run(run_dir)
    folds = _fold_results(files, jobs, fused=config.ensemble.mode == "fedavg")
    if not folds:
        raise UserError(
            f"no job of {run_dir.name} finished: there is nothing to report\n"
            f"  fix: see {files.failures.name} for the errors, then --resume {run_dir}"
        )
    windows = sorted({job.fold.index: job.fold for job in jobs}.values(), key=lambda f: f.index)
    timestamps = np.asarray(store.timestamps)
    tested = coverage_document(coverage(windows, timestamps, config), timestamps)
    return summarise(files, files, jobs, folds, annualisation_of(store, config), tested)


def summarise(
    run: RunFiles,
    out: RunFiles,
    jobs: list[Job],
    folds: list[FoldResult],
    annual: Annualisation,
    tested: dict[str, Any],
) -> RunResults:
    """The summary of `run`'s folds as given (its own test tracks, or a replay of its agents on
    other bars): metrics.json, per-fold metrics and oos_returns.csv written into `out`. The
    trials are those these folds' models were chosen among (every checkpoint evaluated on
    validation, every fused round, the run's sweep), whichever bars judge them now."""
    config = run_config(run.root)
    evaluations = [e for fold in folds for m in fold.members for e in m["evaluations"]]
    evaluations += [r["validation"] for fold in folds if fold.fused for r in fold.fused["rounds"]]
    per_bar = [e["sharpe_per_bar"] for e in evaluations if np.isfinite(e["sharpe_per_bar"])]
    sweep = read_record(run.sweep, "the sweep record") if run.sweep.exists() else None
    n_trials = max(1, len(evaluations) + (sweep["trials"] if sweep else 0))
    variance = float(np.var(per_bar, ddof=1)) if len(per_bar) > 1 else 0.0
    fold_metrics = [_write_fold_metrics(out, fold, annual) for fold in folds]
    oos = pd.concat([fold.frame.assign(fold=fold.index) for fold in folds], ignore_index=True)
    member_returns = pd.concat([fold.member_returns for fold in folds], ignore_index=True)
    _write_oos_csv(out.oos_returns, oos)
    stitched = {
        name: _metrics(oos, name, annual, n_trials if name == AGENT else 1, variance)
        for name in STRATEGIES
    }
    agent = stitched[AGENT]
    significance = config.evaluation.significance
    beats = sum(f[AGENT]["sharpe"] > f["buy_and_hold"]["sharpe"] for f in fold_metrics)
    ahead = sum(f[AGENT]["sharpe"] > f[f["best_baseline"]]["sharpe"] for f in fold_metrics)
    fedavg = (
        _fedavg_summary(folds, oos, annual, n_trials, variance)
        if config.ensemble.mode == "fedavg"
        else None
    )
    agents = stitched | (
        {MEMBERS_ENSEMBLE: fedavg["compared"]["members' ensemble"]} if fedavg else {}
    )
    assets = read_record(run.jobs, "the run's job list")["assets"]
    positions = constant_positions(agents, folds, config, assets)
    summary = {
        "run": run.root.name,
        "annualisation": {"periods_per_year": annual.periods_per_year, "basis": annual.description},
        "test_bars": len(oos),
        "coverage": tested,
        "first": _utc(int(oos["timestamp"].iloc[0])),
        "last": _utc(int(oos["timestamp"].iloc[-1])),
        "folds": len(folds),
        "members": config.ensemble.size,
        "aggregate": config.ensemble.aggregate,
        "member_metrics": _member_metrics(
            member_returns, annual, {job.member: job.risk_profile for job in jobs}
        ),
        "failed_jobs": _failed_jobs(run),
        "n_trials": n_trials,
        "sweep": sweep,
        "trial_sharpe_variance": variance,
        "significance": significance,
        "significant": bool(agent["dsr"] >= significance),
        "folds_beating_buy_and_hold": int(beats),
        "best_baseline": best_baseline(oos, stitched) | {"folds_agent_ahead": int(ahead)},
        "strategies": stitched,
        "mode": config.ensemble.mode,
        "fedavg": fedavg,
        "cost_dominated": cost_dominated(stitched),
        "alarms": collapse_alarms(agents, folds, config, len(assets))
        + constant_position_alarms(positions, config),
        "constant_positions": positions,
        "warnings": [
            f"fold {f.index} member {m['member']}: {w}"
            for f in folds
            for m in f.members
            for w in m["warnings"]
        ],
    }
    write_json(out.metrics, summary)
    return RunResults(summary, oos, fold_metrics, folds, member_returns)


COLLAPSED_EXPOSURE = 0.01  # mean gross weight held below this: the strategy is as good as flat


def collapse_alarms(
    strategies: dict[str, dict[str, float]], folds: list[FoldResult], config: Config,
    n_assets: int,
) -> list[str]:  # fmt: skip
    """The agent (and in fedavg the members' ensemble) that never trades or holds next to
    nothing, with the reason when its members did trade alone: the combining cancelled them."""
    alone = [m["test"][AGENT] for fold in folds for m in fold.members]
    traded = [m for m in alone if _traded(m)]
    band = min_trade_of(config.env, n_assets)
    fused = config.ensemble.mode == "fedavg"
    alarms = []
    for key, name in agent_names(config).items():
        values = strategies.get(key)
        if values is None or _traded(values):
            continue
        line = (
            f"{name} collapsed out of sample: {values['trades']:.0f} trades, exposure "
            f"{100 * values['exposure']:.1f} %"
        )
        if not traded:
            alarms.append(f"{line}; its members never traded either (see their warnings)")
        elif key == AGENT and fused:
            alarms.append(
                f"{line}, while {len(traded)} of {len(alone)} member test(s) traded alone: the "
                "average of their weights does not act as they did (see the fused model's rounds)"
            )
        else:
            vote = (
                "--set ensemble.aggregate=vote (directions that disagree no longer cancel), or "
                if config.ensemble.aggregate != "vote"
                else ""
            )
            alarms.append(
                f"{line}, while {len(traded)} of {len(alone)} member test(s) traded alone: their "
                f"actions combined by the {config.ensemble.aggregate} stay inside the no-trade "
                f"band (env.min_trade {band:.3g}): the members disagree, or each trades only on "
                f"its own rare large targets\n  fix: {vote}a lower env.min_trade (below the "
                "members' usual position size)"
            )
    return alarms


def agent_names(config: Config) -> dict[str, str]:
    """The stitched walks the out-of-sample alarms judge, as the report names them."""
    fused = config.ensemble.mode == "fedavg"
    names = {AGENT: "the fused model" if fused else "the ensemble" if config.ensemble.size > 1
             else "the agent"}  # fmt: skip
    if fused:
        names[MEMBERS_ENSEMBLE] = "the members' ensemble"
    return names


def _traded(values: dict[str, float]) -> bool:
    """A walk that traded and held something: a walk that did not is the no-trade alarm's."""
    return bool(values["trades"] > 0 and values["exposure"] >= COLLAPSED_EXPOSURE)


def constant_positions(
    strategies: dict[str, dict[str, float]], folds: list[FoldResult], config: Config,
    assets: list[str],
) -> dict[str, Any]:  # fmt: skip
    """The walks whose target weights never moved: every asset's std over the test window below
    evaluation.constant_position_std. Each member is judged on its own fold's test walk, the
    agent (fedavg: and the members' ensemble) on its stitched walk; walks that never traded are
    left to the no-trade alarm, and runs from before decisions were recorded are not judged."""
    limit = config.evaluation.constant_position_std
    walks: list[tuple[dict[str, Any], np.ndarray]] = []
    for fold in folds:
        for result in fold.members:
            member, weights = result["member"], fold.member_weights.get(result["member"])
            if weights is not None and _traded(result["test"][AGENT]):
                who = {"track": f"fold {fold.index} member {member}", "fold": fold.index}
                walks.append((who | {"member": member}, weights))
    stitched = {AGENT: [f.weights for f in folds],
                MEMBERS_ENSEMBLE: [f.members_ensemble_weights for f in folds]}  # fmt: skip
    for key, name in agent_names(config).items():
        parts = stitched[key]
        if key in strategies and _traded(strategies[key]) and all(p is not None for p in parts):
            walks.append(({"track": name, "fold": None, "member": None}, np.concatenate(parts)))
    flagged = []
    for who, weights in walks:
        spread = position_spread(weights)
        if spread.is_constant(limit, COLLAPSED_EXPOSURE):
            flagged.append(
                who
                | {
                    "bars": spread.bars,
                    "position": describe_position(spread, assets),
                    "mean": dict(zip(assets, spread.mean.tolist(), strict=True)),
                    "std": dict(zip(assets, spread.std.tolist(), strict=True)),
                }
            )
    return {
        "measure": "standard deviation of each asset's target weight over the test bars",
        "threshold": limit,
        "judged": len(walks),
        "members_judged": sum(who["member"] is not None for who, _ in walks),
        "flagged": flagged,
    }


LISTED = 8  # flagged members named in one alarm line; metrics.json lists them all


def constant_position_alarms(positions: dict[str, Any], config: Config) -> list[str]:
    """One alarm for the stitched agent stuck on one position, one naming the members that are
    (each with its average position), and what to change."""
    limit = f"evaluation.constant_position_std {positions['threshold']:g}"
    fix = f"\n  fix: {constant_position_fix(config)}"
    alarms = []
    members = [f for f in positions["flagged"] if f["member"] is not None]
    for walk in positions["flagged"]:
        if walk["member"] is None:
            alarms.append(
                f"{walk['track']} holds a constant position out of sample: {walk['position']} "
                f"on average over {walk['bars']:,} test bars, every asset's target weight std "
                f"below {limit} (largest {max(walk['std'].values()):.2g}): it ignores the "
                f"market{fix}"
            )
    if members:
        named = ", ".join(
            f"{m['track']} ({m['position']}, std ≤ {max(m['std'].values()):.2g})"
            for m in members[:LISTED]
        )
        more = f" and {len(members) - LISTED} more (metrics.json)" if len(members) > LISTED else ""
        alarms.append(
            f"{len(members)} of {positions['members_judged']} trading member test(s) hold a "
            f"constant position: {named}{more}; every asset's target weight std below {limit} "
            f"over its fold's test window{fix}"
        )
    return alarms


def constant_position_fix(config: Config) -> str:
    """What makes a learner keep one action, and the settings of this run to change."""
    algorithm = config.training.algorithm
    section = getattr(config, algorithm)
    if algorithm == "ppo":
        explore = (
            f"raise ppo.ent_coef (now {section.ent_coef:g}) or set training.entropy_target "
            "(an entropy floor)"
        )
    else:
        explore = f"a larger or learned {algorithm}.ent_coef (now {section.ent_coef})"
    reward = config.reward
    sde = f", and try {algorithm}.use_sde=false" if section.use_sde else ""
    return (
        f"{explore}; check the reward (reward.turnover_penalty {reward.turnover_penalty:g}, "
        f"trade_band_penalty {reward.trade_band_penalty:g}: a penalty on every change can make "
        f"holding still the best policy){sde}"
    )


def strongest_baseline(strategies: dict[str, dict[str, float]]) -> str:
    """The baseline with the highest Sharpe (a flat one scores 0): the bar the agent must clear."""
    return max(
        BASELINES,
        key=lambda name: s if np.isfinite(s := strategies[name]["sharpe"]) else -np.inf,
    )


def best_baseline(oos: pd.DataFrame, strategies: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The stitched best baseline, and whether the agent is ahead of it for more than luck: the
    PSR of the per-bar differences (agent minus baseline) is P[their true Sharpe > 0]."""
    name = strongest_baseline(strategies)
    excess = oos[f"{AGENT}.returns"].to_numpy() - oos[f"{name}.returns"].to_numpy()
    mean = float(np.mean(excess)) if excess.size else 0.0
    # The same lead (or none) on every bar, up to rounding: certain, and PSR's moments degenerate.
    if excess.size > 1 and (not excess.any() or np.std(excess) <= 1e-6 * abs(mean)):
        psr = float(np.sign(mean) / 2 + 0.5)
    else:
        psr = metrics.probabilistic_sharpe(excess)
    return {
        "name": name,
        "sharpe": strategies[name]["sharpe"],
        "agent_ahead": bool(strategies[AGENT]["sharpe"] > strategies[name]["sharpe"]),
        "excess_psr": psr,
    }


def cost_dominated(strategies: dict[str, dict[str, float]]) -> list[str]:
    """Strategies whose cost drag exceeds their gross return (in size): costs, not the market,
    decide their result, whether they churn a small edge away or pay to trade noise."""
    return [
        name
        for name, values in strategies.items()
        if values["cost_drag"] > abs(values["gross_return"])
    ]


def _fedavg_summary(
    folds: list[FoldResult],
    oos: pd.DataFrame,
    annual: Annualisation,
    n_trials: int,
    variance: float,
) -> dict[str, Any]:
    """The fused model beside the members' ensemble and the best member, each deflated by every
    trial; per fold its rounds, who was missing from which, and the time spent at barriers."""
    compared = {
        "fused model": _metrics(oos, AGENT, annual, n_trials, variance),
        "members' ensemble": _metrics(oos, MEMBERS_ENSEMBLE, annual, n_trials, variance),
        "best member (by validation)": _metrics(oos, BEST_MEMBER, annual, n_trials, variance),
    }
    per_fold = []
    for fold in folds:
        record = fold.fused or {"rounds": [], "best_round": None}
        rounds = record["rounds"]
        wait = sum(m["rounds"]["wait_s"] for m in fold.members if m.get("rounds"))
        wall = sum(m["rounds"]["wall_s"] for m in fold.members if m.get("rounds"))
        best = next((r for r in rounds if r["round"] == record["best_round"]), None)
        per_fold.append(
            {
                "fold": fold.index,
                "rounds": len(rounds),
                "best_round": record["best_round"],
                "best_round_timesteps": best["timesteps"] if best else None,
                "best_round_score": best["validation"]["score"] if best else None,
                "short_rounds": [
                    {"round": r["round"], "missing": r["missing"], "reason": r["reason"]}
                    for r in rounds
                    if r["missing"]
                ],
                "barrier_wait_fraction": wait / wall if wall > 0 else 0.0,
                "best_member": int(fold.best_member),
            }
        )
    return {"compared": compared, "folds": per_fold}


def _fold_results(files: RunFiles, jobs: list[Job], fused: bool = False) -> list[FoldResult]:
    """Folds with at least one finished member, from the ensemble tracks `training.post.ensemble`
    wrote (fedavg: the agent is the fused model, `training.post.fuse` tested it); folds whose
    every member failed are left out (the coverage says so)."""
    by_fold = jobs_by_fold(jobs)
    results = []
    for index in sorted(by_fold):
        finished = [job for job in by_fold[index] if job.files.result.exists()]
        if not finished:
            continue
        if not files.ensemble_tracks(index).exists():
            raise UserError(
                f"fold {index} has no ensemble tracks ({files.ensemble_tracks(index)})\n"
                f"  fix: finish the run with --resume {files.root}"
            )
        fused_tracks = record = None
        if fused:
            if not files.fused_tracks(index).exists():
                raise UserError(
                    f"fold {index} has no fused model's tracks ({files.fused_tracks(index)})\n"
                    f"  fix: finish the run with --resume {files.root}"
                )
            fused_tracks = load_tracks(files.fused_tracks(index))
            record = read_fused_record(files, index)
        results.append(
            fold_result(
                FoldTracks(
                    index,
                    load_tracks(files.ensemble_tracks(index)),
                    {job.member: load_tracks(job.files.tracks) for job in finished},
                    fused_tracks,
                ),
                [read_job_result(job.files) for job in finished],
                [job.member for job in by_fold[index]],
                record,
            )
        )
    return results


@dataclass(frozen=True)
class FoldTracks:
    """One fold's walks as `load_tracks` gives them: the ensemble's, each finished member's
    alone, and (fedavg) the fused model's."""

    index: int
    ensemble: dict[str, np.ndarray]
    members: dict[int, dict[str, np.ndarray]]
    fused: dict[str, np.ndarray] | None = None


def fold_result(
    tracks: FoldTracks,
    results: list[dict[str, Any]],
    all_members: list[int],
    record: dict[str, Any] | None,
) -> FoldResult:
    """A fold's result from its walks; `results` are the finished members' result.json, in the
    order of `tracks.members`; members of `all_members` without tracks get NaN returns."""
    ensemble = tracks.ensemble
    agent = tracks.fused if tracks.fused is not None else ensemble
    columns: dict[str, Any] = {"timestamp": ensemble["timestamp"]}
    for name in STRATEGIES:
        for series in SERIES:
            columns[f"{name}.{series}"] = agent[f"{name}.{series}"]
    finished = list(tracks.members)
    best = max(
        range(len(finished)),
        key=lambda i: max((e["score"] for e in results[i]["evaluations"]), default=-np.inf),
    )
    if tracks.fused is not None:
        best_tracks = tracks.members[finished[best]]
        for series in SERIES:
            columns[f"{MEMBERS_ENSEMBLE}.{series}"] = ensemble[f"{AGENT}.{series}"]
            columns[f"{BEST_MEMBER}.{series}"] = best_tracks[f"{AGENT}.{series}"]
    member_returns = pd.DataFrame(
        {
            m: tracks.members[m][f"{AGENT}.returns"] if m in tracks.members else np.nan
            for m in all_members
        },
        index=range(len(ensemble["timestamp"])),
    )
    return FoldResult(
        tracks.index,
        pd.DataFrame(columns),
        results,
        member_returns,
        record,
        finished[best],
        agent.get(f"{AGENT}.weights"),  # runs from before decisions were recorded have none
        {m: w for m, t in tracks.members.items() if (w := t.get(f"{AGENT}.weights")) is not None},
        ensemble.get(f"{AGENT}.weights") if tracks.fused is not None else None,
    )


def _member_metrics(
    returns: pd.DataFrame, annual: Annualisation, profiles: dict[int, str | None]
) -> list[dict[str, Any]]:
    """Each member alone over the test bars it traded (a failed fold leaves a gap)."""
    rows = []
    for member in returns.columns:
        series = returns[member].dropna().to_numpy()
        if series.size < 2:
            continue
        values = metrics.summarise(series, annual.periods_per_year)
        who = {"member": int(member), "risk_profile": profiles.get(int(member))}
        rows.append(who | {"test_bars": int(series.size)} | values)
    return rows


FAILURES_FIX = "delete it (it lists the jobs that failed); --resume {run} retries them"


def _failed_jobs(files: RunFiles) -> dict[str, str]:
    if not files.failures.exists():
        return {}
    return dict(read_record(files.failures, "the failed jobs' record", FAILURES_FIX))


def _metrics(
    frame: pd.DataFrame, name: str, annual: Annualisation, n_trials: int = 1, variance: float = 0.0
) -> dict[str, float]:
    series = {key: frame[f"{name}.{key}"].to_numpy() for key in SERIES}
    values = metrics.summarise(
        series["returns"],
        annual.periods_per_year,
        turnover=series["turnover"],
        cost=series["cost"],
        trades=series["trades"],
        exposure=series["exposure"],
        n_trials=n_trials,
        trial_sharpe_variance=variance,
    )
    # What the positions earned a year before costs (arithmetic): returns with the costs added back.
    gross = np.mean(series["returns"] + series["cost"]) * annual.periods_per_year
    return values | {"gross_return": float(gross)}


def _write_fold_metrics(files: RunFiles, fold: FoldResult, annual: Annualisation) -> dict[str, Any]:
    values: dict[str, Any] = {name: _metrics(fold.frame, name, annual) for name in STRATEGIES}
    values["fold"] = fold.index
    values["best_baseline"] = strongest_baseline(values)
    values["members"] = [
        {"member": m["member"], "seed": m["seed"], "agent": m["test"][AGENT]} for m in fold.members
    ]
    values["first"] = _utc(int(fold.frame["timestamp"].iloc[0]))
    values["last"] = _utc(int(fold.frame["timestamp"].iloc[-1]))
    values["annualisation"] = annual.description
    write_json(files.fold_metrics(fold.index), values)
    return values


def _write_oos_csv(path: Path, oos: pd.DataFrame) -> None:
    table = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(oos["timestamp"], utc=True).dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "fold": oos["fold"],
            **{f"{name}_return": oos[f"{name}.returns"] for name in STRATEGIES},
        }
    )
    with replacing(path, "w") as handle:
        table.to_csv(handle, index=False, float_format="%.10g")


def _utc(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
