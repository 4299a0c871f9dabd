"""What a sweep found, in the run folder: every trial (CSV), the best values (YAML for `--config`),
plots of the optimisation history and the parameters' importance, and a summary that deflates the
best trial's Sharpe by every trial that was tried (completed and pruned alike).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.atomic import replacing, write_json, write_text
from core.evaluation import metrics
from training.run.files import RunFiles


def write_results(run_dir: Path, study: Any, periods_per_year: float) -> dict[str, Any]:
    """trials.csv, best_params.yaml, tuning.json, tuning.md and plots; returns tuning.json."""
    files = RunFiles(run_dir)
    every = study.get_trials(deepcopy=False)
    trials = [t for t in every if not t.user_attrs.get("over_budget")]
    # A retry can be given way to (a fresh trial took the budget's last place while Optuna's
    # heartbeat callback was still enqueueing it): its trial still died of its worker.
    retried = {number for t in every if (number := _retry_of(t)) is not None}
    _write_table(files.trials_table, trials, retried)
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    tried = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    # PBT: each copy with new values is one more configuration evaluated on validation
    copies = sum(int(t.user_attrs.get("pbt_exploits", 0)) for t in tried)
    _write_lineage(files.tuning / "pbt_lineage.csv", trials)
    summary: dict[str, Any] = {
        "study": study.study_name,
        "trials": len(tried),
        "evaluations": len(tried) + copies,  # what the DSR counts
        "pbt_copies": copies,
        "complete": len(complete),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "failed": [
            {"trial": t.number, "reason": _reason(t, retried) or "an error"}
            for t in trials
            if t.state.name == "FAIL"
        ],
        "best": None,
        "collapsed": [t.number for t in complete if collapsed(t)],
    }
    # A trial whose every member kept flat through validation scores the Sharpe of cash: a
    # tie of collapses is no winner, and a collapsed trial does not beat one that traded.
    candidates = [t for t in complete if not collapsed(t)]
    if not candidates:
        files.best_params.unlink(missing_ok=True)  # a stale one would still look like an answer
    if candidates:
        best = max(candidates, key=lambda t: t.value)
        summary["best"] = {
            "trial": best.number,
            "value": best.value,
            "params": best.user_attrs.get("pbt_values") or best.params,
            "instance_sharpes": best.user_attrs.get("instance_sharpes"),
            "dsr": _deflated(best, tried, periods_per_year, len(tried) + copies),
        }
        write_text(files.best_params, _best_yaml(best))
    summary["plots"] = _plots(files.tuning / "plots", study, len(complete))
    write_json(files.tuning_metrics, summary)
    write_text(files.tuning_summary, _markdown(summary, files))
    return summary


def collapsed(trial: Any) -> bool:
    """No member of the trial traded in its chosen validation checkpoint's window."""
    trades = trial.user_attrs.get("instance_trades")
    return bool(trades) and not any(trades)


def _retry_of(trial: Any) -> int | None:
    """The trial this one runs again: ours (journal storage) or Optuna's heartbeat retry (RDB)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    if "retry_of" in trial.user_attrs:
        return int(trial.user_attrs["retry_of"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def _reason(trial: Any, retried: set[int]) -> str:
    if "fail_reason" in trial.user_attrs:
        return str(trial.user_attrs["fail_reason"])
    if trial.state.name == "FAIL" and trial.number in retried:
        return "its worker died"  # failed by Optuna's heartbeat check, then run again
    return ""


def _write_table(path: Path, trials: list[Any], retried: set[int]) -> None:
    import pandas as pd

    rows = [
        {
            "trial": t.number,
            "state": t.state.name,
            "value": t.value,
            **{f"param {key}": value for key, value in t.params.items()},
            "steps reported": len(t.intermediate_values),
            "last reported": t.intermediate_values[max(t.intermediate_values)]
            if t.intermediate_values
            else None,
            "worker": _whole(t.user_attrs.get("worker")),
            "group": _whole(t.user_attrs.get("group")),
            "pbt copies": t.user_attrs.get("pbt_exploits", ""),
            "retry of": _whole(_retry_of(t)),
            "seconds": t.duration.total_seconds() if t.duration else None,
            "reason": _reason(t, retried),
        }
        for t in trials
    ]
    with replacing(path, "w") as handle:
        pd.DataFrame(rows).to_csv(handle, index=False)


def _deflated(best: Any, tried: list[Any], periods_per_year: float, evaluations: int) -> float:
    """The best trial's validation Sharpe against the best of `evaluations` skill-less ones (the
    tried trials, and PBT's copies), with the variance of every tried trial's Sharpe (a pruned
    one: its last reported value)."""
    per_bar = []
    for trial in tried:
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        if value is not None and math.isfinite(value):
            per_bar.append(value / math.sqrt(periods_per_year))
    variance = float(np.var(per_bar, ddof=1)) if len(per_bar) > 1 else 0.0
    benchmark = metrics.expected_max_sharpe(max(1, evaluations), variance)
    attrs = best.user_attrs
    if "sharpe_per_bar" not in attrs:
        return float("nan")
    return metrics.psr_from_moments(
        attrs["sharpe_per_bar"], int(attrs["bars"]), attrs["skew"], attrs["kurtosis"], benchmark
    )


def _write_lineage(path: Path, trials: list[Any]) -> None:
    """tuning/pbt_lineage.csv: every PBT copy (and rescue of a diverged member), in order."""
    import pandas as pd

    rows = [row for t in trials for row in t.user_attrs.get("pbt_lineage", [])]
    if not rows:
        path.unlink(missing_ok=True)
        return
    table = pd.DataFrame(rows).sort_values(["fold", "interval", "trial"], kind="stable")
    with replacing(path, "w") as handle:
        table.to_csv(handle, index=False)


def _best_yaml(best: Any) -> str:
    nested: dict[str, dict[str, Any]] = {}
    values = best.user_attrs.get("pbt_values") or best.params
    for key, value in values.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    header = (
        f"# Best trial {best.number} of the sweep (median validation Sharpe {best.value:.3f}).\n"
        + (
            "# PBT: its values at the end of the schedule (tuning/pbt_lineage.csv has the path).\n"
            if best.user_attrs.get("pbt_values")
            else ""
        )
        + "# Train with it: ./start_training.sh --config THIS_FILE (with the sweep's other settings)\n"
    )
    return header + yaml.safe_dump(nested, sort_keys=False)


def _plots(folder: Path, study: Any, complete: int) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as views

    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    wanted = [("Optimisation history", "history.png", views.plot_optimization_history)]
    if complete >= 2 and len(study.best_params) >= 1:
        wanted.append(("Parameter importance", "importance.png", views.plot_param_importances))
    for title, name, view in wanted:
        with warnings.catch_warnings():  # Optuna's matplotlib views are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                axis = view(study)
            except (ValueError, RuntimeError):  # e.g. importance of a space with one value
                continue
        with replacing(folder / name) as handle:
            axis.figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
        plt.close(axis.figure)
        made[title] = name
    return made


def _markdown(summary: dict[str, Any], files: RunFiles) -> str:
    lines = [
        f"# Sweep {summary['study']}",
        "",
        f"{summary['trials']} trial(s) tried: {summary['complete']} complete, "
        f"{summary['pruned']} pruned; {len(summary['failed'])} failed (retried or left out). "
        "Scored on the folds' validation windows only; the test windows were not read.",
        "",
    ]
    best = summary["best"]
    if summary["collapsed"] and not best:
        lines += [
            f"**No winner: every one of the {summary['complete']} complete trial(s) collapsed** "
            "(no member traded in its validation window; their Sharpes are the cash's 0.000, a "
            "tie). No best_params.yaml was written.",
            "",
            "Fix: widen the space towards more exploration (a larger `ppo.ent_coef` range, a "
            "smaller `reward.reward_scale`), train longer (`ppo.total_timesteps`), or lower "
            "`env.min_trade` so small positions can open.",
            "",
        ]
    elif summary["collapsed"]:
        lines += [
            f"{len(summary['collapsed'])} trial(s) collapsed (no trade in validation) and "
            "were not candidates: " + ", ".join(map(str, summary["collapsed"])) + ".",
            "",
        ]
    if best:
        lines += [
            f"**Best trial {best['trial']}**: validation Sharpe {best['value']:.3f} (its members: "
            + ", ".join(f"{s:.2f}" for s in best["instance_sharpes"] or [])
            + ")",
            "",
            *(f"- `{key}` = {_shown(value)}" for key, value in best["params"].items()),
            "",
            f"Deflated Sharpe Ratio of the best trial, counting all {summary['evaluations']} "
            f"evaluations ({summary['trials']} trial(s) tried"
            + (
                f" + {summary['pbt_copies']} PBT copies with new values"
                if summary["pbt_copies"]
                else ""
            )
            + f"): **{best['dsr']:.3f}** (how likely its validation Sharpe is not the luck of "
            "trying that many).",
            "",
            f"Train with it: `./start_training.sh --config {files.best_params}`.",
            "",
        ]
    for failure in summary["failed"]:
        lines.append(f"- trial {failure['trial']} failed: {failure['reason']}")
    for title, name in summary["plots"].items():
        lines += ["", f"## {title}", "", f"![{title}](plots/{name})"]
    lines += ["", f"Every trial: `{files.trials_table.name}`.", ""]
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _whole(value: Any) -> str:
    """A trial or worker number for the CSV ("" when absent, never 1.0)."""
    return "" if value is None else str(int(value))
