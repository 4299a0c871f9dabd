"""Gather a run's job results into what a person reads: metrics files, plots and report.md.

The strategy of a fold is the ensemble's members trading equal sub-accounts: its return each bar
is the mean of the members' returns. Test windows are stitched in fold order into one
out-of-sample series, judged against the baselines on the same bars and costs. The Deflated
Sharpe Ratio counts every checkpoint evaluated on validation data as a trial, because each one
was a candidate for the reported model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from core.atomic import replacing, write_json, write_text
from core.config import Config
from core.evaluation import metrics
from core.evaluation.baselines import BASELINES
from core.evaluation.judge import AGENT, annualisation_of
from core.evaluation.metrics import Annualisation
from core.features.store import FeatureStore
from training.run_folder import load_run
from training.trainer import load_tracks, run_config

STRATEGIES = (AGENT, *BASELINES)
SERIES = ("returns", "turnover", "cost", "trades", "exposure")
# (metric key, column title, format): "%" scales by 100.
COLUMNS = (
    ("total_return", "total return", "%"),
    ("cagr", "CAGR", "%"),
    ("volatility", "ann. vol", "%"),
    ("sharpe", "Sharpe", "2"),
    ("sortino", "Sortino", "2"),
    ("max_drawdown", "max DD", "%"),
    ("calmar", "Calmar", "2"),
    ("turnover", "turnover/y", "1"),
    ("cost_drag", "cost drag/y", "%"),
    ("trades", "trades", "0"),
    ("exposure", "exposure", "%"),
    ("hit_rate", "hit rate", "%"),
)


@dataclass(frozen=True)
class FoldResult:
    index: int
    frame: pd.DataFrame  # one row per test bar: timestamp + <strategy>.<series> (member means)
    members: list[dict[str, Any]]  # each member's result.json


def build_report(run_dir: Path) -> dict[str, Any]:
    """Write metrics, oos_returns.csv, plots and report.md into `run_dir`; return the summary."""
    config = run_config(run_dir)
    document = json.loads((run_dir / "jobs.json").read_text())
    store = FeatureStore.attach(document["store"])
    annual = annualisation_of(store, config)
    folds = _fold_results(run_dir)
    evaluations = [e for fold in folds for m in fold.members for e in m["evaluations"]]
    per_bar = [e["sharpe_per_bar"] for e in evaluations if np.isfinite(e["sharpe_per_bar"])]
    n_trials = max(1, len(evaluations))
    variance = float(np.var(per_bar, ddof=1)) if len(per_bar) > 1 else 0.0
    fold_metrics = [_write_fold_metrics(run_dir, fold, annual) for fold in folds]
    oos = pd.concat([fold.frame.assign(fold=fold.index) for fold in folds], ignore_index=True)
    _write_oos_csv(run_dir / "oos_returns.csv", oos)
    stitched = {
        name: _metrics(oos, name, annual, n_trials if name == AGENT else 1, variance)
        for name in STRATEGIES
    }
    agent = stitched[AGENT]
    significance = config.evaluation.significance
    beats = sum(f[AGENT]["sharpe"] > f["buy_and_hold"]["sharpe"] for f in fold_metrics)
    summary = {
        "run": run_dir.name,
        "annualisation": {"periods_per_year": annual.periods_per_year, "basis": annual.description},
        "test_bars": len(oos),
        "first": _utc(int(oos["timestamp"].iloc[0])),
        "last": _utc(int(oos["timestamp"].iloc[-1])),
        "folds": len(folds),
        "members": len(folds[0].members),
        "n_trials": n_trials,
        "trial_sharpe_variance": variance,
        "significance": significance,
        "significant": bool(agent["dsr"] >= significance),
        "folds_beating_buy_and_hold": int(beats),
        "strategies": stitched,
        "warnings": [
            f"fold {f.index} member {m['member']}: {w}"
            for f in folds
            for m in f.members
            for w in m["warnings"]
        ],
    }
    write_json(run_dir / "metrics.json", summary)
    from training.plots import write_plots

    plots = write_plots(run_dir / "plots", oos, fold_metrics, folds)
    write_text(
        run_dir / "report.md", _markdown(run_dir, config, summary, fold_metrics, folds, plots)
    )
    return summary


def _fold_results(run_dir: Path) -> list[FoldResult]:
    by_fold: dict[int, list[Path]] = {}
    for job in load_run(run_dir):
        by_fold.setdefault(job.fold.index, []).append(job.folder)
    results = []
    for index in sorted(by_fold):
        members = [json.loads((folder / "result.json").read_text()) for folder in by_fold[index]]
        tracks = [load_tracks(folder / "test_tracks.npz") for folder in by_fold[index]]
        columns: dict[str, Any] = {"timestamp": tracks[0]["timestamp"]}
        for name in STRATEGIES:
            for series in SERIES:
                key = f"{name}.{series}"
                columns[key] = np.mean([track[key] for track in tracks], axis=0)
        results.append(FoldResult(index, pd.DataFrame(columns), members))
    return results


def _metrics(
    frame: pd.DataFrame, name: str, annual: Annualisation, n_trials: int = 1, variance: float = 0.0
) -> dict[str, float]:
    series = {key: frame[f"{name}.{key}"].to_numpy() for key in SERIES}
    return metrics.summarise(
        series["returns"],
        annual.periods_per_year,
        turnover=series["turnover"],
        cost=series["cost"],
        trades=series["trades"],
        exposure=series["exposure"],
        n_trials=n_trials,
        trial_sharpe_variance=variance,
    )


def _write_fold_metrics(run_dir: Path, fold: FoldResult, annual: Annualisation) -> dict[str, Any]:
    values: dict[str, Any] = {name: _metrics(fold.frame, name, annual) for name in STRATEGIES}
    values["fold"] = fold.index
    values["members"] = [
        {"member": m["member"], "seed": m["seed"], "agent": m["test"][AGENT]} for m in fold.members
    ]
    values["first"] = _utc(int(fold.frame["timestamp"].iloc[0]))
    values["last"] = _utc(int(fold.frame["timestamp"].iloc[-1]))
    values["annualisation"] = annual.description
    write_json(run_dir / "folds" / f"fold_{fold.index:02d}" / "metrics.json", values)
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


def format_value(value: float, style: str) -> str:
    if not np.isfinite(value):
        return "n/a" if np.isnan(value) else ("∞" if value > 0 else "-∞")
    if style == "%":
        return f"{100 * value:.1f} %"
    if style == "0":
        return f"{value:,.0f}"
    return f"{value:.{int(style)}f}"


def verdict(summary: dict[str, Any]) -> str:
    agent = summary["strategies"][AGENT]
    trials = summary["n_trials"]
    if summary["significant"]:
        return (
            f"Significant out of sample: Deflated Sharpe Ratio {agent['dsr']:.3f} ≥ "
            f"{summary['significance']:g} after {trials} evaluated checkpoint(s) (PSR "
            f"{agent['psr']:.3f})."
        )
    return (
        f"No significant edge out of sample: Deflated Sharpe Ratio {agent['dsr']:.3f} < "
        f"{summary['significance']:g} after {trials} evaluated checkpoint(s) (PSR "
        f"{agent['psr']:.3f}). Do not trade this."
    )


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(
        title=(
            f"Out of sample: {summary['folds']} fold(s), {summary['test_bars']:,} test bars, "
            f"{summary['first']} to {summary['last']}"
        ),
        title_justify="left",
        caption=f"annualised with {summary['annualisation']['basis']}",
        caption_justify="left",
    )
    table.add_column("strategy")
    shown = ("total_return", "cagr", "sharpe", "max_drawdown", "turnover", "trades", "exposure")
    for key, title, _ in COLUMNS:
        if key in shown:
            table.add_column(title, justify="right")
    for name, values in summary["strategies"].items():
        cells = [format_value(values[key], style) for key, _, style in COLUMNS if key in shown]
        table.add_row(name, *cells)
    return table


def print_summary(summary: dict[str, Any], run_dir: Path, out: TextIO) -> None:
    console = Console(file=out, width=max(100, Console(file=out).width), soft_wrap=False)
    console.print(summary_table(summary))
    console.print(verdict(summary), highlight=False)
    console.print(
        f"Agent beats buy-and-hold (Sharpe) on {summary['folds_beating_buy_and_hold']} of "
        f"{summary['folds']} fold(s).",
        highlight=False,
    )
    if summary["warnings"]:
        console.print(f"{len(summary['warnings'])} warning(s): see the report", highlight=False)
    console.print(f"Report: {run_dir / 'report.md'}", highlight=False, soft_wrap=True)


def _markdown(
    run_dir: Path,
    config: Config,
    summary: dict[str, Any],
    fold_metrics: list[dict[str, Any]],
    folds: list[FoldResult],
    plots: dict[str, str],
) -> str:
    plan = json.loads((run_dir / "plan.json").read_text())["plan"]
    versions = json.loads((run_dir / "versions.json").read_text())
    command = (run_dir / "command.txt").read_text().strip()
    agent = summary["strategies"][AGENT]
    lines = [
        f"# Walk-forward report: {summary['run']}",
        "",
        f"**{verdict(summary)}**",
        "",
        f"The agent beats equal-weight buy-and-hold on Sharpe in "
        f"{summary['folds_beating_buy_and_hold']} of {summary['folds']} fold(s).",
        "",
        "## Out-of-sample summary",
        "",
        f"Test windows of {summary['folds']} fold(s) stitched in time order: "
        f"{summary['test_bars']:,} bars from {summary['first']} to {summary['last']}, "
        f"{summary['members']} member(s) per fold trading equal sub-accounts. Every strategy "
        "trades through the same market model and costs "
        f"(fee {config.env.fee_bps:g} + half-spread {config.env.half_spread_bps:g} + slippage "
        f"{config.env.slippage_bps:g} bps of traded notional; fills at the next bar's open).",
        "",
        f"Annualised figures use **{summary['annualisation']['basis']}**.",
        "",
        _markdown_table(summary["strategies"]),
        "",
        "## Significance",
        "",
        f"- Probabilistic Sharpe Ratio P[SR > 0] of the stitched agent returns: "
        f"**{agent['psr']:.3f}**.",
        f"- Deflated Sharpe Ratio: **{agent['dsr']:.3f}**, counting {summary['n_trials']} "
        f"trial(s): every checkpoint evaluated on validation data was a candidate for the "
        f"reported model (variance of their per-bar validation Sharpe "
        f"{summary['trial_sharpe_variance']:.3g}). Sweep trials will add to this count.",
        f"- A value at or above {summary['significance']:g} (`evaluation.significance`) is "
        "reported as significant.",
        "",
        "## Per fold",
        "",
        _fold_table(fold_metrics, folds),
        "",
    ]
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
    lines += ["## Plots", ""]
    for title, name in plots.items():
        lines += [f"### {title}", "", f"![{title}](plots/{name})", ""]
    lines += [
        "## Run",
        "",
        f"- Command: `{command}`",
        f"- Resolved config: `config.yaml`; hardware plan: `plan.json` ({plan['device']}, "
        f"n_envs {plan['n_envs']}, n_steps {plan['n_steps']}, batch {plan['batch_size']}, "
        f"{plan['torch_threads']} torch thread(s)); folds: `folds.json`; seeds: `jobs.json`.",
        f"- PPO: {config.ppo.total_timesteps:,} steps per member and fold, validation metric "
        f"`{config.training.validation_metric}`, patience {config.training.patience}.",
        "- Per-bar out-of-sample returns: `oos_returns.csv`; per-fold metrics: "
        "`folds/fold_XX/metrics.json`; TensorBoard: `tensorboard --logdir "
        f"{run_dir}/folds`.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]
    return "\n".join(lines)


def _markdown_table(strategies: dict[str, dict[str, float]]) -> str:
    header = "| strategy | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    rows = [
        f"| {name} | "
        + " | ".join(format_value(values[key], style) for key, _, style in COLUMNS)
        + " |"
        for name, values in strategies.items()
    ]
    return "\n".join([header, rule, *rows])


def _fold_table(fold_metrics: list[dict[str, Any]], folds: list[FoldResult]) -> str:
    header = (
        "| fold | test window | agent Sharpe | buy & hold | MA crossover | random | "
        "agent return | trades | best checkpoint (steps) | stopped early |"
    )
    rows = [header, "|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for values, fold in zip(fold_metrics, folds, strict=True):
        best = ", ".join(
            f"{m['best_timesteps']:,}" if m["best_timesteps"] else "-" for m in fold.members
        )
        early = ", ".join("yes" if m["stopped_early"] else "no" for m in fold.members)
        rows.append(
            f"| {values['fold']} | {values['first'][:10]} → {values['last'][:10]} | "
            f"{values[AGENT]['sharpe']:.2f} | {values['buy_and_hold']['sharpe']:.2f} | "
            f"{values['ma_crossover']['sharpe']:.2f} | {values['random']['sharpe']:.2f} | "
            f"{format_value(values[AGENT]['total_return'], '%')} | "
            f"{values[AGENT]['trades']:,.0f} | {best} | {early} |"
        )
    return "\n".join(rows)
