#!/usr/bin/env python
"""Load test of the backend service on loopback (test harness workload; prints figures).

N clients (threads, one protocol Client each) each run M jobs one after another against a
harness server in a child process; every job sends ~20 progress events and a pseudo-random
result of R MB derived from the job's photo, so every client can check that it got exactly
its own bytes. Prints: jobs lost, SHA-256 mismatches, results delivered to the wrong client,
progress events per job, throughput, server memory.

    python scripts/loadtest_service.py                       # 8 clients x 25 jobs x 30 MB
    python scripts/loadtest_service.py --clients 2 --jobs 3 --result-mb 1   # quick

With --ray the same load runs once per worker count (--workers, default 1,2) on Ray worker
actors of a private local Ray cluster (`--ray local` of the harness server, --ray-cpus CPUs)
and the throughputs are printed side by side; there the defaults are 4 clients x 6 jobs,
1 s jobs (20 steps x 0.05 s), 4 MB results. --busy makes every step keep a CPU busy
(pure Python, holding the GIL) instead of sleeping.

    python scripts/loadtest_service.py --ray                 # 1 vs 2 workers, sleeping steps
    python scripts/loadtest_service.py --ray --busy          # 1 vs 2 workers, CPU-bound steps
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from gen3dface.backend.images import encode_png
from gen3dface.backend.service.harness import HarnessProcess, expected_result, rss_mb
from gen3dface.protocol.client import Client, JobError
from gen3dface.protocol.signing import generate_key_file


def photo(client: int, job: int) -> bytes:
    rng = np.random.default_rng(client * 1000 + job)
    return encode_png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=None, help="default 8 (--ray: 4)")
    p.add_argument("--jobs", type=int, default=None, help="jobs per client; default 25 (--ray: 6)")
    p.add_argument("--result-mb", type=float, default=None, help="default 30 (--ray: 4)")
    p.add_argument("--events", type=int, default=20, help="progress events per job")
    p.add_argument("--step-s", type=float, default=None, help="default 0.002 (--ray: 0.05)")
    p.add_argument("--deadline-s", type=float, default=600.0, help="per job")
    p.add_argument("--ray", action="store_true", help="Ray worker actors, once per --workers count")
    p.add_argument("--workers", default="1,2", help="--ray: worker counts to compare (default 1,2)")
    p.add_argument("--ray-cpus", type=int, default=2, help="--ray: the local cluster's CPUs (default 2)")
    p.add_argument("--busy", action="store_true", help="steps keep a CPU busy instead of sleeping")
    args = p.parse_args()
    ray_mode = args.ray
    for name, plain, ray_default in (("clients", 8, 4), ("jobs", 25, 6), ("result_mb", 30.0, 4.0),
                                     ("step_s", 0.002, 0.05)):
        if getattr(args, name) is None:
            setattr(args, name, ray_default if ray_mode else plain)
    if not ray_mode:
        return 0 if run_load(args, [], "in-process worker")["good"] else 1
    rows = []
    for n in [int(x) for x in args.workers.split(",")]:
        extra = ["--ray", "local", "--ray-workers", str(n),
                 "--ray-local-cpus", str(max(args.ray_cpus, n))] + (["--busy"] if args.busy else [])
        rows.append((n, run_load(args, extra, f"{n} Ray worker actor(s)")))
    print()
    print(f"Ray, {args.clients} clients x {args.jobs} jobs of {args.events} x {args.step_s:g} s "
          f"{'busy' if args.busy else 'sleeping'} steps, {args.result_mb:g} MB results, local "
          f"cluster of {args.ray_cpus} CPUs:")
    print(f"{'workers':>8} {'ok':>5} {'wall s':>8} {'jobs/s':>8} {'speed-up':>9} {'median job s':>13}")
    base = rows[0][1]["jobs_per_s"] or float("nan")
    for n, r in rows:
        print(f"{n:>8} {r['ok']:>5} {r['wall']:>8.1f} {r['jobs_per_s']:>8.2f} "
              f"{r['jobs_per_s'] / base:>8.2f}x {r['median']:>13.2f}")
    good = all(r["good"] for _, r in rows)
    print("PASS" if good else "FAIL")
    return 0 if good else 1


def run_load(args, extra: list[str], label: str) -> dict:
    size = int(args.result_mb * (1 << 20))

    print(f"precomputing the expected SHA-256 of {args.clients * args.jobs} results ...", flush=True)
    expected = {}                                   # sha -> (client, job)
    for c in range(args.clients):
        for j in range(args.jobs):
            expected[hashlib.sha256(expected_result(photo(c, j), size)).hexdigest()] = (c, j)

    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "key"
        key = generate_key_file(key_file)
        server = HarnessProcess(key_file=key_file, state_dir=Path(tmp) / "state", events=args.events,
                                step_s=args.step_s, result_mb=args.result_mb, queue=args.clients * 2,
                                extra=["--keep-results-mb", "2048"] + extra).start(timeout_s=180)
        rss0 = rss_mb(server.pid)
        stats = {"ok": 0, "lost": 0, "sha_mismatch": 0, "misdelivered": 0, "errors": [],
                 "progress": [], "latency": []}
        lock = threading.Lock()
        rss_peak = [rss0]

        def run_client(c: int) -> None:
            with Client(server.endpoint, key=key) as client:
                for j in range(args.jobs):
                    n_progress = [0]
                    t0 = time.perf_counter()
                    try:
                        res = client.run_job(photo(c, j), deadline_s=args.deadline_s,
                                             on_progress=lambda *a: n_progress.__setitem__(0, n_progress[0] + 1))
                    except JobError as e:
                        with lock:
                            stats["lost"] += 1
                            stats["errors"].append(f"client {c} job {j}: {e.code} {e.message}")
                        continue
                    sha = hashlib.sha256(res.glb).hexdigest()
                    with lock:
                        stats["latency"].append(time.perf_counter() - t0)
                        stats["progress"].append(n_progress[0])
                        owner = expected.get(sha)
                        if owner == (c, j):
                            stats["ok"] += 1
                        elif owner is None:
                            stats["sha_mismatch"] += 1
                        else:
                            stats["misdelivered"] += 1

        def watch_rss() -> None:
            while any(t.is_alive() for t in threads):
                rss_peak[0] = max(rss_peak[0], rss_mb(server.pid))
                time.sleep(0.5)

        print(f"[{label}] running {args.clients} clients x {args.jobs} jobs, {args.events} progress events and "
              f"a {args.result_mb:g} MB result each, server pid {server.pid} ...", flush=True)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=run_client, args=(c,)) for c in range(args.clients)]
        for t in threads:
            t.start()
        watcher = threading.Thread(target=watch_rss, daemon=True)
        watcher.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        alive = server.proc.poll() is None
        server.stop()

    total = args.clients * args.jobs
    mb = stats["ok"] * args.result_mb
    print()
    print(f"jobs: {total}  ok: {stats['ok']}  lost: {stats['lost']}  sha256 mismatches: "
          f"{stats['sha_mismatch']}  misdelivered: {stats['misdelivered']}")
    if stats["progress"]:
        print(f"progress events per job: min {min(stats['progress'])}  mean "
              f"{statistics.mean(stats['progress']):.1f}  max {max(stats['progress'])}")
        lat = sorted(stats["latency"])
        print(f"job latency: median {statistics.median(lat):.2f} s  p95 {lat[int(0.95 * (len(lat) - 1))]:.2f} s")
    print(f"wall {wall:.1f} s  {total / wall:.2f} jobs/s  results {mb / wall:.0f} MB/s")
    print(f"server RSS: start {rss0:.0f} MB  peak {rss_peak[0]:.0f} MB  server alive at end: {alive}")
    for e in stats["errors"][:10]:
        print("  ", e)
    good = stats["ok"] == total and alive
    print("PASS" if good else "FAIL")
    lat = sorted(stats["latency"]) or [float("nan")]
    return {"good": good, "ok": stats["ok"], "wall": wall, "jobs_per_s": total / wall,
            "median": statistics.median(lat)}


if __name__ == "__main__":
    sys.exit(main())
