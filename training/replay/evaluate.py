"""--evaluate: a finished run's agents trade FOLDER's bars through the same market model, costs
and baselines, and the judgement is written like a run's (metrics.json, oos_returns.csv, plots,
report.md) into an evaluation folder with evaluation.json saying which models saw which bars.

`--window forward` (default): every bar after the run's last test bar, traded by the last
fold's models; nothing was tuned on those bars. `--window test`: each fold's own test window
with that fold's models; on the run's own data, its metrics.json is the run's.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import write_json
from core.bar_range import BarRange
from core.data.timestamps import format_utc
from core.errors import UserError
from core.evaluation.judge import annualisation_of, track_metrics
from core.features.store import FeatureStore
from core.folds import coverage
from training.post.results import FoldResult, FoldTracks, RunResults, fold_result, summarise
from training.replay.agents import FoldAgents, finished_folds, load_fold_agents, walk_fold
from training.replay.dataset import replay_store
from training.replay.windows import Overlap, Window, forward_window, overlap, test_window
from training.run.files import PRIVATE_DIR, RunFiles
from training.run.folder import job_store
from training.run.job import Job
from training.run.records import read_fused_record
from training.run.tracks import track_arrays
from training.views.folds import coverage_document

WINDOWS = ("forward", "test")


@dataclass(frozen=True)
class Request:
    run_dir: Path
    data: Path | None
    window: str = "forward"
    start: int | None = None  # UTC ns: first row (--from)
    end: int | None = None  # UTC ns: last row (--to)
    fold: int | None = None
    output: Path | None = None
    show_progress: bool = True


@dataclass(frozen=True)
class Evaluation:
    folder: Path
    results: RunResults
    record: dict[str, Any]  # evaluation.json


def evaluate(request: Request) -> Evaluation:
    run_dir = request.run_dir.resolve()
    store, config = replay_store(run_dir, request.data, request.show_progress)
    jobs = load_run_jobs(run_dir)
    done = finished_folds(run_dir, jobs)
    windows = _windows(request, run_dir, store, config.env.window, sorted(done))
    files = RunFiles(run_dir)
    folds: list[FoldResult] = []
    described = []
    for window in windows:
        if request.show_progress:  # a walk of a long window takes a while: say what runs
            print(
                f"Walking fold {window.fold}'s models over {len(window.bars) - 1:,} bars",
                file=sys.stderr,
                flush=True,
            )
        fold_store = job_store(done[window.fold][0], store)  # its regime columns, if any
        agents = load_fold_agents(run_dir, window.fold, done[window.fold], jobs, fold_store)
        folds.append(_fold(agents, fold_store, window, files))
        rows = np.asarray(store.timestamps)[window.bars.start + 1 : window.bars.stop]
        described.append(_describe(agents, rows, overlap(run_dir, window.fold, rows, sorted(done))))
    folder = _folder(request, run_dir)
    out = RunFiles(folder)
    annual = annualisation_of(store, config)
    results = summarise(
        files, out, jobs, folds, annual, _coverage(request, jobs, windows, store, config)
    )
    record = {
        "run": str(run_dir),
        "data": str(request.data.resolve()) if request.data else "the run's data",
        "window": request.window,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "store": str(store.path),
        "folds": described,
        "in_sample": any(d["overlap"]["train"] or d["overlap"]["validation"] for d in described),
    }
    write_json(out.root / EVALUATION_RECORD, record)
    from training.replay.report import write_report

    write_report(out, files, results, record, list(store.assets))
    return Evaluation(folder, results, record)


EVALUATION_RECORD = "evaluation.json"


def load_run_jobs(run_dir: Path) -> list[Job]:
    """The run's jobs (its store need not exist: the replay has its own)."""
    from training.replay.dataset import replay_run_files
    from training.run.records import read_record

    files = replay_run_files(run_dir)
    document = read_record(files.jobs, "the run's job list")
    return [
        dataclasses.replace(Job.from_json(job), run_dir=str(run_dir)) for job in document["jobs"]
    ]


def _windows(
    request: Request, run_dir: Path, store: FeatureStore, window: int, folds: list[int]
) -> list[Window]:
    if request.fold is not None and request.fold not in folds:
        raise UserError(
            f"--fold {request.fold}: the run has no finished fold {request.fold}\n"
            f"  fix: pass one of {', '.join(map(str, folds))}"
        )
    if request.window == "test":
        chosen = [request.fold] if request.fold is not None else folds
        return [test_window(run_dir, f, store, window, request.start, request.end) for f in chosen]
    fold = folds[-1] if request.fold is None else request.fold
    return [forward_window(run_dir, fold, folds, store, window, request.start, request.end)]


def _fold(agents: FoldAgents, store: FeatureStore, window: Window, files: RunFiles) -> FoldResult:
    """The fold's walks as a FoldResult, each member's result.json with its test metrics from
    this walk (its training record is the run's)."""
    walks = walk_fold(agents, store, window.bars)
    annual = annualisation_of(store, agents.config)
    results = [
        result
        | {
            "test": {
                name: track_metrics(track, annual)
                for name, track in walks.members[job.member].items()
            }
        }
        for job, result in zip(agents.jobs, agents.results, strict=True)
    ]
    tracks = FoldTracks(
        agents.index,
        track_arrays(walks.ensemble),
        {member: track_arrays(t) for member, t in walks.members.items()},
        None if walks.fused is None else track_arrays(walks.fused),
    )
    record = read_fused_record(files, agents.index) if walks.fused is not None else None
    return fold_result(tracks, results, agents.all_members, record)


def _describe(agents: FoldAgents, rows: np.ndarray, seen: Overlap) -> dict[str, Any]:
    return {
        "fold": agents.index,
        "agent": agents.kind,
        "members": [job.member for job in agents.jobs],
        "bars": len(rows),
        "first": format_utc(int(rows[0])),
        "last": format_utc(int(rows[-1])),
        "overlap": dataclasses.asdict(seen),
    }


def _coverage(
    request: Request, jobs: list[Job], windows: list[Window], store: FeatureStore, config: Any
) -> dict[str, Any]:
    """The run's coverage sentence for a test replay (on its own data: the run's); for a forward
    window, how much of FOLDER after the run's test bars it walks."""
    times = np.asarray(store.timestamps)
    if request.window == "test":
        by_index = {job.fold.index: job.fold for job in jobs}
        # A walk starts at the close of the bar before its test window (Fold.test_walk).
        mapped = {w.fold: BarRange(w.bars.start + 1, w.bars.stop) for w in windows}
        folds = [dataclasses.replace(by_index[w.fold], test=mapped[w.fold]) for w in windows]
        if request.fold is None and request.start is None and request.end is None:
            every = sorted(by_index.values(), key=lambda f: f.index)
            folds = [dataclasses.replace(f, test=mapped.get(f.index, f.test)) for f in every]
        return coverage_document(coverage(folds, times, config), times)
    (window,) = windows
    rows = len(window.bars) - 1
    after = len(times) - window.bars.start - 1
    return {
        "tested_bars": rows,
        "available_bars": after,
        "fraction": rows / after if after else 0.0,
        "summary": f"forward window of {rows:,} bar(s) from "
        f"{format_utc(int(times[window.bars.start + 1]))} to {format_utc(int(times[window.bars.stop - 1]))}",
    }


def _folder(request: Request, run_dir: Path) -> Path:
    """--output, or RUN_DIR/evaluations/<UTC time>-<window>; never an existing folder's files."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = request.output or run_dir / "evaluations" / f"{stamp}-{request.window}"
    if folder.exists() and any(folder.iterdir()):
        raise UserError(
            f"the evaluation folder {folder} exists and is not empty\n"
            "  fix: pass --output a new folder (or leave it out: RUN_DIR/evaluations/<time>-<window>)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    except OSError as error:
        raise UserError(
            f"cannot write the evaluation folder {folder}: {error.strerror or error}\n"
            "  fix: pass --output a folder you can write to"
        ) from None
    return folder
