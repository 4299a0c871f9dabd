"""The package layout is the architecture: imports only go down, and light modules stay light."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO_ROOT

PACKAGES = ("core", "training")
# Inside core, a module may import its own family and any family of a lower rank.
CORE_RANKS = {
    "core.errors": 0,
    "core.units": 0,
    "core.suggest": 0,
    "core.bar_range": 0,
    "core.atomic": 1,  # its DiskFullError is a core.errors.UserError
    "core.bounded_yaml": 0,  # yaml only: the config reads through it
    "core.redact": 0,  # passwords out of output: stdlib, SQLAlchemy when a URL is shown
    "core.process": 0,  # psutil only
    "core.features.registry": 0,  # stdlib-only lists the config validates against
    "core.policies.registry": 0,
    "core.config": 1,
    "core.algorithms": 2,  # the learner's name, its replay buffer's size: reads the config
    "core.policies": 2,
    "core.data": 2,
    "core.hardware": 3,
    "core.features": 3,
    "core.fold_sizing": 3,  # auto walk-forward windows: config, calendar notes, numpy
    "core.folds": 4,
    "core.envs": 4,
    "core.evaluation": 5,
}


# training/'s families, ranked the same way: a family imports its own and lower ranks only.
TRAINING_RANKS = {
    "training": 0,  # the package's docstring
    "training.run": 0,  # run folder: files, folder, job, records, tracks
    "training.views": 0,  # tables and JSON for --dry-run and the data checks
    "training.fedavg": 1,  # averaging and the file barrier
    "training.launcher": 1,  # backends, the launch loop, the job's process
    "training.member": 2,  # one member's training, and the member as a workload
    "training.population": 3,  # a fold's members in groups: batched rollouts, update, walks
    "training.post": 3,  # ensemble walk, fused model, results, report, plots
    "training.learners": 4,  # the learner seam: LEARNERS, the ensemble's launch
    "training.tuning": 5,  # sweeps (their members through a learner)
    "training.replay": 4,  # a finished run's agents on new bars: --evaluate, --predict
    "training.commands": 6,  # flags, the pipeline, planning, sweep, data and replay commands
    "training.train_walk_forward": 7,  # the command line
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
    }


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere (module level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from core.hardware import threads` imports the sub-module core.hardware.threads
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}


def family(module: str) -> str:
    return next(
        prefix
        for prefix in sorted(CORE_RANKS, key=len, reverse=True)
        if module == prefix or module.startswith(prefix + ".")
    )


def training_family(module: str) -> str:
    return next(
        prefix
        for prefix in sorted(TRAINING_RANKS, key=len, reverse=True)
        if module == prefix or module.startswith(prefix + ".")
    )


def test_training_imports_only_go_down() -> None:
    graph = import_graph()
    wrong = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith("training")
        for target in targets
        if target.startswith("training")
        and TRAINING_RANKS[training_family(target)] > TRAINING_RANKS[training_family(module)]
    ]
    assert not wrong


def test_every_training_module_has_a_family() -> None:
    modules = [m for m in project_modules() if m.startswith("training.")]
    assert all(training_family(m) != "training" for m in modules)


def test_core_never_imports_training() -> None:
    upward = {
        (module, target)
        for module, targets in import_graph().items()
        if module.startswith("core")
        for target in targets
        if target.startswith("training")
    }
    assert not upward


def test_core_imports_only_go_down() -> None:
    graph = import_graph()
    wrong = []
    for module, targets in graph.items():
        if not module.startswith("core.") or module == "core":
            continue
        for target in targets:
            if (
                target.startswith("core.")
                and CORE_RANKS[family(target)] > CORE_RANKS[family(module)]
            ):
                wrong.append(f"{module} -> {target}")
            elif (
                target.startswith("core.")
                and CORE_RANKS[family(target)] == CORE_RANKS[family(module)]
                and family(target) != family(module)
            ):
                wrong.append(f"{module} -> {target} (a sibling layer)")
    assert not wrong


def test_no_import_cycles() -> None:
    graph = import_graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles


def test_every_module_is_in_a_known_family() -> None:
    for module in import_graph():
        if module.startswith("core."):
            assert family(module)  # raises StopIteration for a module outside the layer map


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # Env workers attach the store with numpy only.
        ("core.features.store", ("pandas", "torch", "talib", "core.features.build")),
        # The entry point plans and sets thread limits before numpy or torch may load.
        ("core.hardware.threads", ("numpy", "torch")),
        ("core.hardware.planner", ("numpy", "torch")),
        # ...counting the policy's parameters exactly without building it.
        ("core.policies.size", ("numpy", "torch")),
        # ...and reads the cluster profile it plans a SLURM task for.
        ("training.launcher.profile", ("numpy", "torch", "submitit")),
        ("core.units", ("numpy", "pandas")),
        # The entry point remembers a --storage password before anything else loads.
        ("core.redact", ("sqlalchemy",)),
        # Small shared types: importable from anywhere without a heavy dependency.
        ("core.bar_range", ("numpy", "pydantic")),
        ("core.envs.settings", ("numpy", "pandas", "torch")),
        ("training.run.files", ("numpy", "pandas", "torch")),
        # SubprocVecEnv workers import the env, never the data or feature pipeline.
        ("core.envs.trading_env", ("talib", "core.data.load", "core.features.build")),
    ],
)
def test_light_modules_stay_light(module: str, forbidden: tuple[str, ...]) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(sorted(m for m in {forbidden!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_a_screen() -> None:
    """Long functions hide several jobs; each project function fits in 80 lines."""
    long = []
    for name, path in project_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long


def test_the_command_line_only_parses() -> None:
    """The CLI module parses and dispatches; the pipeline runs (training.commands.pipeline)."""
    cli = REPO_ROOT / "training" / "train_walk_forward.py"
    assert len(cli.read_text().splitlines()) < 300
    assert "training.commands.pipeline" in imports_of(cli, set(project_modules()))


def test_the_launcher_knows_no_workload() -> None:
    """Members, sweep workers and groups are the launcher's workloads; it imports none of them."""
    graph = import_graph()
    workloads = (
        "training.member.member_training",
        "training.fedavg",
        "training.tuning",
        "training.member.member_run",
    )
    wrong = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith("training.launcher")
        for target in targets
        if target.startswith(workloads)
    ]
    assert not wrong
