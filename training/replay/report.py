"""The evaluation folder's report.md: which run, which fold's models, which bars, and (loudly)
whether the models had seen any of them; then the run report's tables and plots."""

from __future__ import annotations

from typing import Any

from core.atomic import write_text
from training.post.plots import write_plots
from training.post.report import (
    alarm_lines,
    baseline_verdict,
    cost_lines,
    fold_table,
    fused_lines,
    markdown_table,
    members_markdown,
    plot_lines,
    verdict,
)
from training.post.results import RunResults
from training.run.files import RunFiles


def write_report(
    out: RunFiles, run: RunFiles, results: RunResults, record: dict[str, Any], assets: list[str]
) -> None:
    summary = results.summary
    plots = write_plots(
        out.plots, results.oos, results.fold_metrics, results.folds, results.member_returns, assets
    )
    window = record["window"]
    lines = [
        f"# Evaluation of {run.root.name}: {window} window",
        "",
        *seen_lines(record),
        f"**{verdict(summary)}**",
        "",
        f"**{baseline_verdict(summary)}**",
        "",
        "## What was replayed",
        "",
        f"- Run: `{record['run']}`; data: `{record['data']}`; features rebuilt with the run's "
        f"resolved settings (`{run.config.name}` + `{run.inferred_config.name}`) into "
        f"`{record['store']}`.",
        "- Window: "
        + (
            "every bar after the run's last test bar (a forward test: nothing was trained, "
            "validated or tuned on it)"
            if window == "forward"
            else "each fold's own test window, with that fold's models (a replay of the run's test)"
        )
        + f"; coverage: {summary['coverage']['summary']}.",
        *(
            f"- Fold {f['fold']}'s models ({f['agent']}; members "
            f"{', '.join(map(str, f['members']))}): {f['bars']:,} bars from {f['first']} to "
            f"{f['last']}."
            for f in record["folds"]
        ),
        f"- The Deflated Sharpe Ratio counts {summary['n_trials']} trial(s): the candidates "
        "these models were chosen among on validation (and the run's sweep, if any).",
        "",
        *alarm_lines(summary),
        *(f"**{line}**\n" for line in cost_lines(summary)),
        f"Annualised figures use **{summary['annualisation']['basis']}**.",
        "",
        markdown_table(summary["strategies"]),
        "",
        *members_markdown(summary),
        *fused_lines(summary),
        "## Per fold",
        "",
        fold_table(results.fold_metrics, results.folds),
        "",
        *plot_lines(out, plots),
    ]
    write_text(out.report, "\n".join(lines))


def seen_lines(record: dict[str, Any]) -> list[str]:
    """The overlap, first: in-sample bars make every number below optimistic."""
    lines = []
    for fold in record["folds"]:
        seen = fold["overlap"]
        if seen["train"] or seen["validation"]:
            lines.append(
                f"> **WARNING: IN SAMPLE.** {seen['train']:,} of fold {fold['fold']}'s "
                f"{fold['bars']:,} evaluated bars were in its models' training window and "
                f"{seen['validation']:,} in their validation window: these numbers are not "
                "out of sample. Use --window forward (bars after the run's data) for a test."
            )
        elif seen["tested"] and record["window"] == "forward":
            lines.append(
                f"> Note: {seen['tested']:,} of the {fold['bars']:,} bars were already in the "
                "run's test windows (reported there); the rest are new."
            )
    if not lines and record["window"] == "forward":
        lines.append(
            "> Out of sample: none of these bars was in the run's training, validation or test "
            "windows."
        )
    return [*lines, ""] if lines else []
