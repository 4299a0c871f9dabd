"""Render a run's gathered results for a person: report.md, the summary table, the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.atomic import write_text
from core.config import Config
from core.evaluation.judge import AGENT
from training.post.plots import write_plots
from training.post.results import FoldResult, RunResults, gather_results
from training.run.files import RunFiles
from training.run.folder import run_config
from training.run.records import read_record

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


def build_report(run_dir: Path) -> dict[str, Any]:
    """Gather the results, then write plots and report.md into `run_dir`; return the summary."""
    files = RunFiles(run_dir)
    results = gather_results(run_dir)
    assets = read_record(files.jobs, "the run's job list")["assets"]
    plots = write_plots(
        files.plots,
        results.oos,
        results.fold_metrics,
        results.folds,
        results.member_returns,
        assets,
    )
    markdown = _markdown(files, run_config(run_dir), results, plots)
    write_text(files.report, markdown)
    return results.summary


def format_value(value: float, style: str) -> str:
    if not np.isfinite(value):
        return "n/a" if np.isnan(value) else ("∞" if value > 0 else "-∞")
    if style == "%":
        return f"{100 * value:.1f} %"
    if style == "0":
        return f"{value:,.0f}"
    return f"{value:.{int(style)}f}"


def cost_lines(summary: dict[str, Any]) -> list[str]:
    """One warning per strategy whose costs outweigh what its positions earned or lost."""
    lines = []
    for name in summary["cost_dominated"]:
        values = summary["strategies"][name]
        lines.append(
            f"{name}: cost drag {format_value(values['cost_drag'], '%')}/y exceeds its gross "
            f"return {format_value(values['gross_return'], '%')}/y: costs, not the market, "
            "decide its result"
        )
    return lines


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


def baseline_verdict(summary: dict[str, Any]) -> str:
    """The agent against the strongest baseline, stitched and per fold, with the chance that its
    lead (or lag) is more than luck: a simple rule that beats the agent is said first."""
    best = summary["best_baseline"]
    agent = summary["strategies"][AGENT]["sharpe"]
    folds = f"{best['folds_agent_ahead']} of {summary['folds']} fold(s)"
    chance = (
        f"P[the agent's per-bar excess over it has a true Sharpe > 0] = {best['excess_psr']:.3f} "
        "(PSR of the agent-minus-baseline returns)"
    )
    if best["agent_ahead"]:
        return (
            f"The agent beats the best baseline, {best['name']}: Sharpe {agent:.2f} vs "
            f"{best['sharpe']:.2f} stitched, ahead on {folds}; {chance}."
        )
    return (
        f"A simple rule beats the agent: {best['name']} made Sharpe {best['sharpe']:.2f} vs the "
        f"agent's {agent:.2f} stitched; the agent is ahead of it on {folds}; {chance}."
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
    console.print(f"Coverage: {summary['coverage']['summary']}", highlight=False)
    for line in [*summary["alarms"], *cost_lines(summary)]:
        console.print(f"[yellow]{escape(line)}[/]", highlight=False)
    console.print(verdict(summary), highlight=False)
    console.print(baseline_verdict(summary), highlight=False, markup=False)
    console.print(
        f"Agent beats buy-and-hold (Sharpe) on {summary['folds_beating_buy_and_hold']} of "
        f"{summary['folds']} fold(s).",
        highlight=False,
    )
    spread = member_spread(summary)
    if spread:
        console.print(
            "Members alone (Sharpe): "
            + ", ".join(
                f"{label} {row['sharpe']:.2f} (member {row['member']})" for label, row in spread
            ),
            highlight=False,
        )
    fedavg = summary.get("fedavg")
    if fedavg:
        console.print(
            "Fused model vs members' ensemble vs best member (Sharpe): "
            + ", ".join(f"{name} {v['sharpe']:.2f}" for name, v in fedavg["compared"].items()),
            highlight=False,
        )
        for fold in fedavg["folds"]:
            for short in fold["short_rounds"]:
                console.print(
                    f"[yellow]fold {fold['fold']} round {short['round']} averaged without "
                    f"member(s) {short['missing']}[/]: {short['reason']}",
                    highlight=False,
                )
    for job, error in summary["failed_jobs"].items():
        console.print(f"[red]failed[/] {job}: {error}", highlight=False)
    if summary["warnings"]:
        console.print(f"{len(summary['warnings'])} warning(s): see the report", highlight=False)
    console.print(f"Report: {RunFiles(run_dir).report}", highlight=False, soft_wrap=True)


def member_spread(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Best, median and worst member by out-of-sample Sharpe (empty for a one-member run)."""
    rows = sorted(
        (r for r in summary["member_metrics"] if np.isfinite(r["sharpe"])),
        key=lambda r: r["sharpe"],
    )
    if len(rows) < 2:
        return []
    return [("best", rows[-1]), ("median", rows[(len(rows) - 1) // 2]), ("worst", rows[0])]


def members_markdown(summary: dict[str, Any]) -> list[str]:
    rows = summary["member_metrics"]
    if len(rows) < 2 and not summary["failed_jobs"]:
        return []
    agent = summary["strategies"][AGENT]
    fused = summary.get("mode") == "fedavg"
    header = "| | member | risk profile | test bars | total return | CAGR | Sharpe | max DD |"
    lines = [
        "## Ensemble and members",
        "",
        (
            f"The agent is the fused model of {summary['members']} member(s): one network, the "
            "average of the members' weights at its best round on validation (see below)"
            if fused
            else f"The agent is the ensemble of {summary['members']} member(s): on every test bar "
            f"it trades the {summary['aggregate']} of the finished members' deterministic "
            "actions through the same market model"
        )
        + (
            "; members took the risk profiles in turn and were tested with their own, the "
            "ensemble trades with the run's settings"
            if any(row.get("risk_profile") for row in rows)
            else ""
        )
        + ". Each member alone, on the same bars:",
        "",
        header,
        "|---|---:|---|---:|---:|---:|---:|---:|",
        f"| {'fused model' if fused else 'ensemble'} | - | - | {summary['test_bars']:,} | "
        f"{format_value(agent['total_return'], '%')} | "
        f"{format_value(agent['cagr'], '%')} | {format_value(agent['sharpe'], '2')} | "
        f"{format_value(agent['max_drawdown'], '%')} |",
    ]
    labelled = member_spread(summary) + [("", row) for row in rows]
    for label, row in labelled:
        lines.append(
            f"| {label} | {row['member']} | {row.get('risk_profile') or 'default'} | "
            f"{row['test_bars']:,} | "
            f"{format_value(row['total_return'], '%')} | {format_value(row['cagr'], '%')} | "
            f"{format_value(row['sharpe'], '2')} | {format_value(row['max_drawdown'], '%')} |"
        )
    lines.append("")
    if summary["failed_jobs"]:
        lines += [
            f"**{len(summary['failed_jobs'])} job(s) failed after every retry** and are left "
            "out; the results above are the survivors':",
            "",
            *(f"- {job}: {error}" for job, error in summary["failed_jobs"].items()),
            "",
        ]
    return lines


def fused_lines(summary: dict[str, Any]) -> list[str]:
    """fedavg: the fused model, the members' ensemble and the best member side by side (the
    same bars, costs and trial count), then each fold's rounds."""
    fedavg = summary.get("fedavg")
    if not fedavg:
        return []
    lines = [
        "## Fused model vs members' ensemble vs best member",
        "",
        f"ensemble.mode fedavg: the members of a fold averaged their policy and value weights every "
        f"ensemble.sync_steps and went on from the average. Out of sample, on the same "
        f"{summary['test_bars']:,} test bars; each Deflated Sharpe Ratio counts all "
        f"{summary['n_trials']} trials (every member evaluation and every round's average):",
        "",
        "| model | Sharpe | total return | turnover/y | DSR |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in fedavg["compared"].items():
        lines.append(
            f"| {name} | {format_value(values['sharpe'], '2')} | "
            f"{format_value(values['total_return'], '%')} | "
            f"{format_value(values['turnover'], '1')} | {values['dsr']:.3f} |"
        )
    lines += [
        "",
        "| fold | rounds | round kept (steps, validation score) | best member | "
        "barrier wait | rounds short of members |",
        "|---:|---:|---|---:|---:|---|",
    ]
    for fold in fedavg["folds"]:
        kept = (
            f"{fold['best_round']} ({fold['best_round_timesteps']:,}, "
            f"{fold['best_round_score']:.2f})"
            if fold["best_round"]
            else "-"
        )
        short = "; ".join(
            f"round {r['round']} without member(s) {', '.join(map(str, r['missing']))} "
            f"({r['reason']})"
            for r in fold["short_rounds"]
        )
        lines.append(
            f"| {fold['fold']} | {fold['rounds']} | {kept} | {fold['best_member']} | "
            f"{format_value(fold['barrier_wait_fraction'], '%')} | {short or 'none'} |"
        )
    lines += [
        "",
        "Barrier wait: the share of the members' training wall time spent waiting for the "
        "others at the rounds' barriers.",
        "",
    ]
    return lines


def _markdown(files: RunFiles, config: Config, results: RunResults, plots: dict[str, str]) -> str:
    summary, fold_metrics, folds = results.summary, results.fold_metrics, results.folds
    plan = read_record(files.plan, "the run's plan")["plan"]
    versions = read_record(files.versions, "the run's package versions")
    command = files.command.read_text().splitlines()[0].strip()  # as typed (start_training.sh)
    agent = summary["strategies"][AGENT]
    lines = [
        f"# Walk-forward report: {summary['run']}",
        "",
        f"**{verdict(summary)}**",
        "",
        f"**{baseline_verdict(summary)}**",
        "",
        f"The agent beats equal-weight buy-and-hold on Sharpe in "
        f"{summary['folds_beating_buy_and_hold']} of {summary['folds']} fold(s).",
        "",
        "## Out-of-sample summary",
        "",
        f"Test windows of {summary['folds']} fold(s) stitched in time order: "
        f"{summary['test_bars']:,} bars from {summary['first']} to {summary['last']}, "
        f"an ensemble of {summary['members']} member(s) per fold. Every strategy "
        "trades through the same market model and costs "
        f"(fee {config.env.fee_bps:g} + half-spread {config.env.half_spread_bps:g} + slippage "
        f"{config.env.slippage_bps:g} bps of traded notional; fills at the next bar's open).",
        "",
        f"Coverage: {summary['coverage']['summary']}.",
        "",
        *alarm_lines(summary),
        *(f"**{line}**\n" for line in cost_lines(summary)),
        f"Annualised figures use **{summary['annualisation']['basis']}**.",
        "",
        markdown_table(summary["strategies"]),
        "",
        *members_markdown(summary),
        *fused_lines(summary),
        "## Significance",
        "",
        f"- Probabilistic Sharpe Ratio P[SR > 0] of the stitched agent returns: "
        f"**{agent['psr']:.3f}**.",
        f"- Deflated Sharpe Ratio: **{agent['dsr']:.3f}**, counting {summary['n_trials']} "
        f"trial(s): every checkpoint of every member evaluated on validation data was a candidate for the "
        f"reported model (variance of their per-bar validation Sharpe "
        f"{summary['trial_sharpe_variance']:.3g})"
        + (
            f", including the {summary['sweep']['trials']} trial(s) of the sweep "
            f"`{summary['sweep']['study']}` that chose this run's settings."
            if summary.get("sweep")
            else "."
        ),
        f"- A value at or above {summary['significance']:g} (`evaluation.significance`) is "
        "reported as significant.",
        "",
        "## Per fold",
        "",
        fold_table(fold_metrics, folds),
        "",
    ]
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
    lines += plot_lines(files, plots)
    lines += [
        "## Run",
        "",
        f"- Command: `{command}`",
        f"- Resolved config: `{files.config.name}`; hardware plan: `{files.plan.name}` "
        f"({plan['device']}, n_envs {plan['n_envs']}, n_steps {plan['n_steps']}, batch "
        f"{plan['batch_size']}, {plan['torch_threads']} torch thread(s)); folds: "
        f"`{files.fold_windows.name}`; seeds: `{files.jobs.name}`.",
        f"- PPO: {config.ppo.total_timesteps:,} steps per member and fold, validation metric "
        f"`{config.training.validation_metric}`, patience {config.training.patience}.",
        f"- Per-bar out-of-sample returns: `{files.oos_returns.name}`; per-fold metrics: "
        + ", ".join(f"`{files.fold_metrics(f.index).relative_to(files.root)}`" for f in folds)
        + f"; TensorBoard: `.venv/bin/tensorboard --logdir {files.folds}`.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        _reproducibility_line(config, plan),
        "",
    ]
    return "\n".join(lines)


def _reproducibility_line(config: Config, plan: dict[str, Any]) -> str:
    """What makes the run repeatable (docs/training.md#reproducibility): the seeds and the
    settings the numbers depend on."""
    return (
        f"- Reproducibility: ensemble.base_seed {config.ensemble.base_seed} (each member's seed in "
        f"`jobs.json`: Python, numpy and torch generators, and its envs, seeded from it), "
        f"ensemble.learner {plan.get('learner', 'separate')}, hardware.vec_env "
        f"{plan.get('vec_env') or config.hardware.vec_env}, {plan['torch_threads']} torch and "
        f"{plan.get('blas_threads', 1)} BLAS thread(s), torch's deterministic-algorithms mode "
        "off (not needed on the CPU: tested). The same command, config and seed on this machine "
        "give a byte-identical `oos_returns.csv`; across machines, thread counts or torch "
        "versions the floats may differ (docs/training.md)."
    )


def alarm_lines(summary: dict[str, Any]) -> list[str]:
    """Collapse alarms, as warnings a reader cannot miss."""
    return [f"> **ALARM: {line.replace(chr(10) + '  ', ' ')}**\n" for line in summary["alarms"]]


def plot_lines(files: RunFiles, plots: dict[str, str]) -> list[str]:
    lines = ["## Plots", ""]
    for title, name in plots.items():
        lines += [f"### {title}", "", f"![{title}]({files.plots.name}/{name})", ""]
    return lines


def markdown_table(strategies: dict[str, dict[str, float]]) -> str:
    header = "| strategy | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    rows = [
        f"| {name} | "
        + " | ".join(format_value(values[key], style) for key, _, style in COLUMNS)
        + " |"
        for name, values in strategies.items()
    ]
    return "\n".join([header, rule, *rows])


def fold_table(fold_metrics: list[dict[str, Any]], folds: list[FoldResult]) -> str:
    header = (
        "| fold | test window | agent Sharpe | buy & hold | MA crossover | random | "
        "agent return | trades | best checkpoint (steps; median, range) | stopped early |"
    )
    rows = [header, "|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for values, fold in zip(fold_metrics, folds, strict=True):
        best = _steps_cell([m["best_timesteps"] for m in fold.members])
        early = f"{sum(bool(m['stopped_early']) for m in fold.members)} of {len(fold.members)}"
        rows.append(
            f"| {values['fold']} | {values['first'][:10]} → {values['last'][:10]} | "
            f"{values[AGENT]['sharpe']:.2f} | {values['buy_and_hold']['sharpe']:.2f} | "
            f"{values['ma_crossover']['sharpe']:.2f} | {values['random']['sharpe']:.2f} | "
            f"{format_value(values[AGENT]['total_return'], '%')} | "
            f"{values[AGENT]['trades']:,.0f} | {best} | {early} |"
        )
    return "\n".join(rows)


def _steps_cell(steps: list[int | None]) -> str:
    """One member's step, or the members' median and range: a cell stays short at any size."""
    known = sorted(s for s in steps if s)
    if not known:
        return "-"
    if len(steps) == 1:
        return f"{known[0]:,}"
    median = int(np.median(known))
    missing = f", {len(steps) - len(known)} without" if len(known) < len(steps) else ""
    return f"{median:,} ({known[0]:,}–{known[-1]:,}{missing})"
