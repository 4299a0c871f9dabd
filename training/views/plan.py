"""Human and machine views of the hardware and the plan (`--dry-run`, `--dry-run --json`)."""

from __future__ import annotations

import json
from typing import TextIO

from rich.console import Console
from rich.table import Table

from core.hardware.machine import Hardware
from core.hardware.planner import Plan


def plan_document(hardware: Hardware, plan: Plan) -> dict:
    return {"hardware": hardware.to_json(), "plan": plan.to_json()}


def print_json(hardware: Hardware, plan: Plan, out: TextIO) -> None:
    out.write(json.dumps(plan_document(hardware, plan), indent=2) + "\n")


def print_tables(hardware: Hardware, plan: Plan, out: TextIO) -> None:
    console = Console(file=out, width=max(100, Console(file=out).width), soft_wrap=False)
    console.print(_hardware_table(hardware))
    console.print(_plan_table(plan))
    for note in plan.notes:
        console.print(f"• {note}", highlight=False)


def _hardware_table(hardware: Hardware) -> Table:
    table = Table(title=f"Hardware: {hardware.name}", title_justify="left")
    table.add_column("reading")
    table.add_column("value", justify="right")
    table.add_column("source", overflow="fold")
    src = hardware.sources
    table.add_row("usable CPUs", str(hardware.usable_cpus), src.get("usable_cpus", ""))
    table.add_row("logical CPUs", str(hardware.logical_cpus), src.get("logical_cpus", ""))
    table.add_row("physical cores", str(hardware.physical_cores), src.get("physical_cores", ""))
    table.add_row("memory", f"{hardware.memory_gb:.1f} GB", src.get("memory_gb", ""))
    table.add_row(
        "memory available",
        f"{hardware.memory_available_gb:.1f} GB",
        src.get("memory_available_gb", ""),
    )
    if not hardware.gpus:
        table.add_row("GPUs", "0", src.get("gpus", ""))
    for gpu in hardware.gpus:
        memory = (
            "memory not stated"
            if gpu.free_memory_gb is None or gpu.memory_gb is None
            else f"{gpu.free_memory_gb:.1f} / {gpu.memory_gb:.1f} GB free"
        )
        table.add_row(f"GPU {gpu.index}", memory, f"{gpu.name}; {src.get('gpus', '')}")
    return table


def _plan_table(plan: Plan) -> Table:
    work = f"{plan.ensemble_size} member(s)"
    if plan.folds > 1:  # a whole run: its jobs (or groups) are what run at once
        work += f" x {plan.folds} folds = {plan.ensemble_size * plan.folds} jobs"
        work += f" in {plan.units} groups" if plan.learner == "population" else ""
    title = (
        f"Plan: {work}, {plan.members_concurrent} at once on {plan.device}; "
        f"{plan.threads_in_use}/{plan.usable_cpus} CPUs busy"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("setting")
    table.add_column("value", justify="right")
    table.add_column("set by")
    table.add_column("why", overflow="fold")
    for key, decision in plan.decisions.items():
        value = f"{decision.value:,}" if isinstance(decision.value, int) else str(decision.value)
        table.add_row(key, value, decision.chosen, decision.why)
    table.add_row(
        "memory per member",
        f"{plan.memory_per_member_gb:.2f} GB",
        "estimate",
        f"budget {plan.memory_budget_gb:.1f} GB for {plan.members_concurrent} process(es) at once",
    )
    if plan.device == "cuda":
        grouped = plan.learner == "population"  # a group's process holds all its members
        table.add_row(
            "GPU memory per group" if grouped else "GPU memory per member",
            f"{plan.gpu_memory_per_member_gb:.2f} GB",
            "estimate",
            f"{'group' if grouped else 'member'} slots on GPUs {list(plan.gpu_assignment)}",
        )
    return table
