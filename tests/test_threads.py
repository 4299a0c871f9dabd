"""Thread hygiene: env worker processes started the way training starts them stay in budget."""

from __future__ import annotations

import json
import os

import numpy as np
import psutil
import pytest
from stable_baselines3.common.vec_env import SubprocVecEnv

from core.hardware.threads import (
    THREAD_VARIABLES,
    ThreadLimitedFactory,
    export_thread_limits,
    process_thread_budget,
    thread_environment,
)
from tests.conftest import run_snippet
from tests.helpers.matmul_env import MatmulEnv

pytestmark = pytest.mark.slow


def peak_worker_threads(env_fns: list, steps: int = 6) -> list[int]:
    """Start workers with SB3's SubprocVecEnv (spawn), make them work, sample their OS threads."""
    vec = SubprocVecEnv(env_fns, start_method="spawn")
    try:
        vec.reset()
        peaks = [0] * len(vec.processes)
        actions = np.zeros((len(env_fns), 1), dtype=np.float32)
        for _ in range(steps):
            vec.step(actions)
            for i, process in enumerate(vec.processes):
                peaks[i] = max(peaks[i], psutil.Process(process.pid).num_threads())
        return peaks
    finally:
        vec.close()


def test_thread_environment_covers_every_variable() -> None:
    env = thread_environment(3)
    assert set(env) == set(THREAD_VARIABLES) and set(env.values()) == {"3"}
    target: dict[str, str] = {}
    export_thread_limits(2, target)
    assert target == thread_environment(2)


def test_env_workers_stay_within_their_thread_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in thread_environment(1).items():
        monkeypatch.setenv(name, value)  # what the entry point does before starting workers
    factory = ThreadLimitedFactory(MatmulEnv, blas_threads=1, torch_threads=1)
    peaks = peak_worker_threads([factory] * 3)
    budget = process_thread_budget(1, 1)
    assert all(peak <= budget for peak in peaks), f"worker threads {peaks} exceed {budget}"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: unlimited pools are 1 thread too")
@pytest.mark.every_cpu
def test_without_limits_workers_exceed_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: the measurement above can fail; unlimited BLAS/OpenMP pools spawn more threads."""
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    peaks = peak_worker_threads([MatmulEnv] * 2)
    assert max(peaks) > process_thread_budget(1, 1)


def test_learner_process_respects_torch_threads() -> None:
    code = (
        "import json, psutil\n"
        "from core.hardware.threads import export_thread_limits, enforce_thread_limits\n"
        "export_thread_limits(1)\n"
        "import numpy as np, torch\n"
        "enforce_thread_limits(blas_threads=1, torch_threads=2)\n"
        "me = psutil.Process()\n"
        "before = {t.id: t.user_time + t.system_time for t in me.threads()}\n"
        "a = torch.rand(800, 800)\n"
        "for _ in range(10): a @ a; np.ones((300, 300)) @ np.ones((300, 300))\n"
        "busy = [t for t in me.threads() if t.user_time + t.system_time - before.get(t.id, 0) > 0.01]\n"
        "print(json.dumps([torch.get_num_threads(), me.num_threads(), len(busy)]))\n"
    )
    torch_threads, os_threads, busy_threads = json.loads(run_snippet(code))
    assert torch_threads == 2
    assert os_threads <= process_thread_budget(1, 2)
    assert busy_threads <= 2  # the planner counts max(blas_threads, torch_threads) CPU-busy threads


def test_entry_point_sets_limits_before_numpy_loads() -> None:
    """An import hook records the BLAS thread variable at the moment numpy is first imported."""
    code = (
        "import os, sys\n"
        "seen = {}\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numpy' and 'numpy' not in seen:\n"
        "            seen['numpy'] = os.environ.get('OPENBLAS_NUM_THREADS', 'unset')\n"
        "        return None\n"
        "sys.meta_path.insert(0, Watch())\n"
        "sys.argv = ['train', '--dry-run', '--json', '--no-progress']\n"
        "import contextlib, io\n"
        "from training import train_walk_forward as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = cli.main()\n"
        "print(code, seen.get('numpy', 'never'), os.environ['OPENBLAS_NUM_THREADS'])\n"
    )
    status, blas_at_numpy_import, blas = run_snippet(code, drop_env=THREAD_VARIABLES).split()
    assert status == "0" and blas_at_numpy_import == "1" and blas == "1"
