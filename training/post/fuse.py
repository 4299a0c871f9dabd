"""After the jobs: each fold's fused model, the average of its best round on validation, saved as
an SB3 .zip and tested out of sample like a member.

Rounds whose average nobody validated (the member that closed the round died before it
could) are validated here. A fold whose rounds and choice did not change is not tested again.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.atomic import read_json, replacing, write_json
from core.envs.settings import env_settings
from core.evaluation.judge import annualisation_of, evaluate_window
from training.fedavg.record import read_fused, recorded_rounds
from training.member.checkpoints import load_tested
from training.member.rounds import load_state
from training.run.files import RunFiles
from training.run.folder import job_store, load_run, run_config
from training.run.job import Job
from training.run.records import FusedRecord, FusedRound, write_fused_record
from training.run.tracks import save_tracks


def fuse_run(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Write every fold's fused.zip, fused_tracks.npz and fused.json; return {fold: record}."""
    files = RunFiles(run_dir)
    config = run_config(run_dir)
    by_fold: dict[int, list[Job]] = {}
    for job in load_run(run_dir):
        if job.files.state.exists():
            by_fold.setdefault(job.fold.index, []).append(job)
    store = annual = None
    records = {}
    for index, members in sorted(by_fold.items()):
        fed = files.fedavg(index)
        closed_rounds = recorded_rounds(fed)
        if not closed_rounds:
            continue
        template = None
        validations = []
        for closed in closed_rounds:
            validation = read_json(fed.validation(closed.round))
            if validation is None:
                store = job_store(members[0])
                annual = annual or annualisation_of(store, config)
                template = template or _template(members[0])
                load_state(template, read_fused(fed, closed.round))
                from training.member.validation import validation_metrics

                validation = validation_metrics(
                    template,
                    store,
                    env_settings(config),
                    members[0].fold.validation,
                    annual,
                    config,
                ) | {"timesteps": closed.timesteps}
                write_json(fed.validation(closed.round), validation)
            validations.append(validation)
        best = (
            max(range(len(closed_rounds)), key=lambda i: validations[i]["score"])
            if config.training.select == "best"
            else len(closed_rounds) - 1
        )
        record = FusedRecord(
            best_round=closed_rounds[best].round,
            rounds=[
                FusedRound(**asdict(closed), validation=validation)
                for closed, validation in zip(closed_rounds, validations, strict=True)
            ],
        )
        records[index] = record
        if files.fused_tracks(index).exists() and read_json(files.fused_record(index)) == record:
            continue
        store = job_store(members[0])
        template = template or _template(members[0])
        load_state(template, read_fused(fed, closed_rounds[best].round))
        with replacing(files.fused_model(index)) as handle:
            template.save(handle)
        from training.member.models import agent_policy

        first = members[0]
        tracks = evaluate_window(
            store,
            env_settings(config),
            first.fold.test_walk,
            agent_policy(template),
            config,
            first.seed,
        )
        save_tracks(files.fused_tracks(index), tracks)
        write_fused_record(files, index, record)
    return records


def _template(job: Job) -> Any:
    """A member's model: the network the fused weights are loaded into and saved with."""
    return load_tested(job, "last")
