"""Seconds per fedavg averaging round: the file barrier (the baseline, bench/file_barrier.py: the
shared-disk barrier fedavg used before torch.distributed, polling every 0.2 s as its members did)
vs the collective (training.fedavg.collective: one all_gather_object and one gloo all_reduce).

Each arm starts `members` processes that meet `rounds` times with a policy-sized state (the
default MLP on the sample's 145 features: about 30,000 float32 weights, or --params); nothing
trains between rounds, so what is timed is the meeting alone. A round's time is the slowest
member's, from arriving to holding the average; the first round (connections, imports) is left
out. Usage: python bench/bench_fedavg_rounds.py [--members 2 4] [--rounds 20] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import multiprocessing
import socket
import statistics
import tempfile
import time
from typing import Any

import numpy as np

BARRIER_POLL_S = 0.2  # how often a member looked at the barrier's files (the old trainer's)


def policy_state(member: int, params: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(member)
    hidden = max(1, params // (2 * 145 + 2 * 64 + 2))
    return {
        "pi.0.weight": rng.normal(size=(hidden, 145)).astype(np.float32),
        "vf.0.weight": rng.normal(size=(hidden, 145)).astype(np.float32),
        "pi.1.weight": rng.normal(size=(64, hidden)).astype(np.float32),
        "vf.1.weight": rng.normal(size=(64, hidden)).astype(np.float32),
        "log_std": rng.normal(size=2).astype(np.float32),
    }


def _files_member(
    folder: str, member: int, members: int, rounds: int, params: int, out: Any
) -> None:
    from bench.file_barrier import FedAvgFiles, RoundBarrier

    barrier = RoundBarrier(FedAvgFiles(Path(folder)), member, range(members), timeout_s=300)
    state = policy_state(member, params)
    times = []
    for index in range(1, rounds + 1):
        started = time.perf_counter()
        barrier.arrive(index, state, 0.0, index)
        while (closed := barrier.poll(index)) is None:
            time.sleep(BARRIER_POLL_S)
        state = barrier.fused(closed)
        times.append(time.perf_counter() - started)
    out.put((member, times))


def _collective_member(
    folder: str, member: int, members: int, rounds: int, params: int, port: int, out: Any
) -> None:
    from training.fedavg.collective import DistributedMeeting, Rendezvous
    from training.fedavg.meeting import Arrival
    from training.member.member_training import run_to_end
    from training.run.files import FedAvgFiles

    rendezvous = Rendezvous(member, members, "127.0.0.1", port, "gloo", 300.0)
    meeting = DistributedMeeting(
        FedAvgFiles(Path(folder)), rendezvous, [[m] for m in range(members)]
    )
    state = policy_state(member, params)
    times = []
    for index in range(1, rounds + 1):
        started = time.perf_counter()
        state = run_to_end(meeting.meet(index, [Arrival(member, state, 0.0, index)])).fused
        times.append(time.perf_counter() - started)
    meeting.close()
    out.put((member, times))


def run_arm(arm: str, members: int, rounds: int, params: int) -> float:
    """Median seconds per round (the slowest member's), the first round left out."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    with tempfile.TemporaryDirectory(prefix=f"ploutos-rounds-{arm}-") as folder:
        if arm == "files":
            args = [(folder, m, members, rounds, params, out) for m in range(members)]
            target: Any = _files_member
        else:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            args = [(folder, m, members, rounds, params, port, out) for m in range(members)]
            target = _collective_member
        processes = [context.Process(target=target, args=a) for a in args]
        for process in processes:
            process.start()
        results = dict(out.get(timeout=600) for _ in processes)
        for process in processes:
            process.join(timeout=60)
    slowest = [max(results[m][r] for m in results) for r in range(1, rounds)]
    return statistics.median(slowest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--params", type=int, default=30_000, help="float32 weights a member")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first round is not timed)")
    rows = []
    print(f"{'members':>7}  {'file barrier s/round':>20}  {'collective s/round':>18}  ratio")
    for members in args.members:
        files = run_arm("files", members, args.rounds, args.params)
        collective = run_arm("collective", members, args.rounds, args.params)
        ratio = files / collective
        rows.append(
            {"members": members, "files_s": files, "collective_s": collective, "ratio": ratio}
        )
        print(f"{members:>7}  {files:>20.4f}  {collective:>18.4f}  {ratio:5.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"params": args.params, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
