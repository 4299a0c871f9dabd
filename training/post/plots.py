"""The report's pictures: out-of-sample equity and drawdown, Sharpe per fold, validation curves."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.dates
import matplotlib.ticker

matplotlib.use("Agg")  # files only: no display on servers and in tests
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from core.atomic import replacing
from core.evaluation.judge import AGENT
from training.post.results import MEMBERS_ENSEMBLE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from training.post.results import FoldResult

POSITION_LINES = 6  # assets drawn as lines; more (or longer windows) are a heat map
POSITION_LINE_BARS = 1_000  # beyond this many bars, lines of every asset blur into one band
LOG_SCALE_RATIO = 10.0  # largest / smallest equity beyond which the equity plot is logarithmic
STYLES = {
    AGENT: {"color": "tab:blue", "linewidth": 1.6},
    "buy_and_hold": {"color": "tab:gray"},
    "ma_crossover": {"color": "tab:green"},
    "random": {"color": "tab:orange", "alpha": 0.8},
    "cash": {"color": "black", "linestyle": ":"},
}


def write_plots(
    folder: Path,
    oos: pd.DataFrame,
    fold_metrics: list[dict[str, Any]],
    folds: list[FoldResult],
    member_returns: pd.DataFrame,
    assets: list[str],
) -> dict[str, str]:
    """PNG files in `folder`; returns {title: file name} in reading order."""
    times = pd.to_datetime(oos["timestamp"], utc=True)
    plots = {
        "Out-of-sample equity vs baselines": (
            "equity.png",
            _equity(times, oos, member_returns),
        ),
        "Drawdown": ("drawdown.png", _drawdown(times, oos)),
    }
    if all(fold.weights is not None for fold in folds):  # runs from before decisions were kept
        weights = np.concatenate([fold.weights for fold in folds])
        plots["Positions: the agent's target weights"] = (
            "positions.png",
            _positions(times, oos, weights, assets),
        )
    plots |= {
        "Sharpe per fold: agent vs baselines": ("fold_sharpe.png", _fold_sharpe(fold_metrics)),
        "Validation metric during training": ("validation.png", _validation(folds)),
    }
    if any(fold.fused for fold in folds):
        plots["Fused model by round (fedavg)"] = ("fused_rounds.png", _fused_rounds(folds))
    for name, figure in plots.values():
        _save(figure, folder / name)
    return {title: name for title, (name, _) in plots.items()}


def _save(figure: Figure, path: Path) -> None:
    with replacing(path) as handle:
        figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def _equity(times: pd.Series, oos: pd.DataFrame, member_returns: pd.DataFrame) -> Figure:
    figure, axis = plt.subplots(figsize=(10, 4.5))
    curves = {name: np.cumprod(1.0 + oos[f"{name}.returns"].to_numpy()) for name in STYLES}
    if member_returns.shape[1] > 1:  # each member alone: the band and median of their curves
        members = np.cumprod(1.0 + member_returns.fillna(0.0).to_numpy(), axis=0)
        low, middle, high = np.percentile(members, [0, 50, 100], axis=1)
        color = STYLES[AGENT]["color"]
        axis.fill_between(times, low, high, color=color, alpha=0.15, label="members: worst-best")
        axis.plot(times, middle, color=color, linestyle="--", linewidth=0.9, label="median member")
        curves |= {"members low": low, "members high": high}
    fused = f"{MEMBERS_ENSEMBLE}.returns" in oos  # fedavg: the agent is the fused model
    if fused:
        beside = np.cumprod(1.0 + oos[f"{MEMBERS_ENSEMBLE}.returns"].to_numpy())
        axis.plot(times, beside, color=STYLES[AGENT]["color"], linestyle=":", linewidth=1.2,
                  label="members' ensemble")  # fmt: skip
        curves["members' ensemble"] = beside
    for name, style in STYLES.items():
        label = name
        if name == AGENT and (fused or member_returns.shape[1] > 1):
            label = f"{AGENT} (fused model)" if fused else f"{AGENT} (ensemble)"
        axis.plot(times, curves[name], label=label, **style)
    _fold_lines(axis, times, oos)
    values = np.concatenate(list(curves.values()))
    positive = values[values > 0]
    if positive.size == values.size and positive.max() / positive.min() > LOG_SCALE_RATIO:
        axis.set_yscale("log")  # one runaway curve would flatten the others on a linear axis
    axis.set_ylabel("growth of 1")
    axis.set_title("Stitched test windows (out of sample), after costs")
    axis.legend(loc="upper left", fontsize=8)
    axis.grid(alpha=0.3)
    return figure


def _drawdown(times: pd.Series, oos: pd.DataFrame) -> Figure:
    figure, axis = plt.subplots(figsize=(10, 3))
    for name in (AGENT, "buy_and_hold"):
        equity = np.cumprod(1.0 + oos[f"{name}.returns"].to_numpy())
        drawdown = equity / np.maximum.accumulate(np.maximum(equity, 1.0)) - 1.0
        axis.fill_between(times, drawdown, 0, alpha=0.35, label=name, color=STYLES[name]["color"])
    _fold_lines(axis, times, oos)
    axis.set_ylabel("drawdown")
    axis.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    axis.set_title("Drawdown from the running peak (out of sample)")
    axis.legend(loc="lower left", fontsize=8)
    axis.grid(alpha=0.3)
    return figure


def _positions(
    times: pd.Series, oos: pd.DataFrame, weights: np.ndarray, assets: list[str]
) -> Figure:
    """What the agent held, bar by bar: a line per asset while they can be told apart (few
    assets, few bars), a heat map (asset × time) beyond that. Each row's weight is the target decided at the close of
    the bar before it, held through that row's bar."""
    if len(assets) <= POSITION_LINES and len(weights) <= POSITION_LINE_BARS:
        figure, axis = plt.subplots(figsize=(10, 3.2))
        for index, asset in enumerate(assets):
            axis.plot(times, weights[:, index], drawstyle="steps-post", linewidth=0.9, label=asset)
        axis.axhline(0, color="k", linewidth=0.6)
        axis.set_ylabel("target weight")
        axis.legend(loc="upper left", fontsize=7, ncol=len(assets))
        axis.grid(alpha=0.3)
    else:
        figure, axis = plt.subplots(figsize=(10, 0.25 * len(assets) + 1.5))
        span = (*matplotlib.dates.date2num([times.iloc[0], times.iloc[-1]]), len(assets), 0)
        image = axis.imshow(weights.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1,
                            interpolation="nearest", extent=span)  # fmt: skip
        axis.xaxis_date()
        axis.set_yticks(np.arange(len(assets)) + 0.5, assets, fontsize=7)
        figure.colorbar(image, ax=axis, label="target weight")
    _fold_lines(axis, times, oos)
    axis.set_title("Positions decided on the test bars (after the execution rules)")
    return figure


def _fold_lines(axis: Any, times: pd.Series, oos: pd.DataFrame) -> None:
    starts = np.flatnonzero(np.diff(oos["fold"].to_numpy())) + 1
    for start in starts:
        axis.axvline(times.iloc[start], color="k", alpha=0.2, linewidth=0.8)


def _fold_sharpe(fold_metrics: list[dict[str, Any]]) -> Figure:
    """The agent beside every trading baseline per fold, values on the bars and the test dates
    under them: whether a simple rule did better is read off at a glance."""
    names = [AGENT, "buy_and_hold", "ma_crossover", "random"]
    figure, axis = plt.subplots(figsize=(max(5, 2.0 * len(fold_metrics) + 2), 3.8))
    index = np.arange(len(fold_metrics))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [m[name]["sharpe"] for m in fold_metrics]
        bars = axis.bar(index + (k - (len(names) - 1) / 2) * width, values, width, label=name,
                        color=STYLES[name]["color"])  # fmt: skip
        axis.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    axis.axhline(0, color="k", linewidth=0.8)
    axis.set_xticks(
        index, [f"fold {m['fold']}\n{m['first'][:10]} →\n{m['last'][:10]}" for m in fold_metrics],
        fontsize=7,
    )  # fmt: skip
    axis.set_ylabel("annualised Sharpe (test)")
    axis.set_title("Sharpe per fold: the agent and the baselines, same bars and costs")
    axis.legend(fontsize=7, ncol=len(names), loc="best")
    return figure


def _fused_rounds(folds: list[FoldResult]) -> Figure:
    """Per fold: each round's average on validation (line) over the members' own weights just
    before it (dots), the round kept ringed: does averaging keep what the members learned?"""
    figure, axes = plt.subplots(
        1, len(folds), figsize=(4 * len(folds), 3.2), sharey=True, squeeze=False
    )
    for axis, fold in zip(axes[0], folds, strict=True):
        rounds = (fold.fused or {}).get("rounds", [])
        steps = [r["timesteps"] for r in rounds]
        score = [r["validation"]["score"] for r in rounds]
        members = [(e["timesteps"], e["score"]) for m in fold.members for e in m["evaluations"]]
        if members:
            axis.scatter(*zip(*members, strict=True), s=10, color="grey", alpha=0.5,
                         label="members before averaging")  # fmt: skip
        axis.plot(steps, score, marker="o", markersize=4, color=STYLES[AGENT]["color"],
                  label="round average")  # fmt: skip
        kept = [(s, v) for s, v, r in zip(steps, score, rounds, strict=True)
                if r["round"] == fold.fused["best_round"]]  # fmt: skip
        if kept:
            axis.scatter(*zip(*kept, strict=True), s=80, facecolors="none", edgecolors="red",
                         zorder=3, label="kept (fused.zip)")  # fmt: skip
        axis.set_title(f"fold {fold.index}", fontsize=9)
        axis.set_xlabel("steps per member")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation score")
    axes[0][0].legend(fontsize=7)
    return figure


def _validation(folds: list[FoldResult]) -> Figure:
    """Per fold, the members' median validation score by step and their band (worst to best):
    one line a fold whatever the ensemble size; red dots are the checkpoints kept."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    for fold in folds:
        points = [(p["timesteps"], p["score"]) for m in fold.members for p in m["evaluations"]]
        if not points:
            continue
        steps = sorted({step for step, _ in points})
        by_step = [
            [v if np.isfinite(v) else np.nan for step, v in points if step == at] for at in steps
        ]
        with warnings.catch_warnings():  # a step where every score is nan stays a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            low, middle, high = (
                np.array([f(v) for v in by_step]) for f in (np.nanmin, np.nanmedian, np.nanmax)
            )
        label = f"fold {fold.index}" + (
            f" ({len(fold.members)} members: median, band)" if len(fold.members) > 1 else ""
        )
        (line,) = axis.plot(steps, middle, marker="o", markersize=3, label=label)
        if len(fold.members) > 1:
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
        kept = [max(m["evaluations"], key=lambda p: p["score"]) for m in fold.members
                if m["evaluations"] and m["best_timesteps"] is not None]  # fmt: skip
        if kept:
            axis.scatter([p["timesteps"] for p in kept], [p["score"] for p in kept], color="red",
                         zorder=3, s=14)  # fmt: skip
    axis.set_xlabel("timesteps")
    axis.set_ylabel("validation score")
    axis.set_title("Validation during training (red: checkpoints kept)")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    return figure
