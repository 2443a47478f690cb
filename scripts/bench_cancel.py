"""How fast a running job stops: latency from cancel() to JobCancelled, per pipeline stage.

    python scripts/bench_cancel.py [--assets ../shared/data] [--points 0.25,0.5,0.75]
                                   [--big] [--cold] [--serve] [--repeats 1]

In-process: the real HeadPipeline runs skimage's astronaut (a warm reference run first gives
each stage's duration); then, for each stage (decode, face, fit, texture, export) and each
point (a fraction of that stage's duration after it starts), a timer thread calls
CancelToken.cancel() and the script measures the time until pipe.run raises JobCancelled.
--cold adds fresh pipelines cancelled while they load (mediapipe graphs, the head model, the
fitter, the texture baker's UV raster). --big also runs the astronaut upscaled 4x with
texture_size 2048 and quality "high" (a 2048-texel bake, the slowest stage there is).
--serve repeats the warm points through a real `gen3dface serve --insecure --ephemeral` on
loopback: the latency there runs from Client.cancel() to the client's `cancelled` event.
Figures for README; nothing here is a test (tests/test_pipeline_cancel.py is the test).
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("decode", "face", "fit", "texture", "export")


def _png(rgb) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(rgb).save(b, "PNG", compress_level=1)
    return b.getvalue()


def reference_run(pipe, png, options):
    """Stage windows (start, end) in seconds from the job's start, from a full run."""
    from gen3dface.backend.contracts import CallbackSink

    marks: dict = {}
    t0 = time.perf_counter()

    def on_progress(stage, fraction, message):
        t = time.perf_counter() - t0
        marks.setdefault(stage, [t, t])[1] = t

    pipe.run(png, None, options, CallbackSink(on_progress=on_progress))
    return {s: (a, b) for s, (a, b) in marks.items()}


def cancel_once(pipe, png, options, stage: str, delay_s: float) -> dict:
    """Run a job; `delay_s` after `stage` starts, cancel it. Returns what happened."""
    from gen3dface.backend.contracts import CallbackSink, CancelToken, JobCancelled

    token = CancelToken()
    st = {"stage": None, "fraction": 0.0, "t_cancel": None, "where": None, "after": 0,
          "timer": None}

    def fire():
        st["where"] = f"{st['stage']} {st['fraction']:.2f}"
        st["t_cancel"] = time.perf_counter()
        token.cancel()

    def on_progress(s, f, m):
        st["stage"], st["fraction"] = s, f
        if st["t_cancel"] is not None:
            st["after"] += 1
        if s == stage and st["timer"] is None:
            st["timer"] = threading.Timer(delay_s, fire)
            st["timer"].start()

    try:
        pipe.run(png, None, options, CallbackSink(on_progress=on_progress), token)
        outcome = "finished before the cancel"
    except JobCancelled:
        outcome = "cancelled"
    t_end = time.perf_counter()
    if st["timer"] is not None:
        st["timer"].cancel()
    lat = None if st["t_cancel"] is None or outcome != "cancelled" else t_end - st["t_cancel"]
    pipe._bg.call(lambda: None, None)          # let an abandoned background call finish
    return {"latency_s": lat, "where": st["where"], "outcome": outcome,
            "events_after": st["after"]}


def summarise(label: str, lats: list[float]) -> str:
    if not lats:
        return f"{label:34s} no cancel landed"
    return (f"{label:34s} n={len(lats):2d}  median {statistics.median(lats) * 1000:7.1f} ms  "
            f"max {max(lats) * 1000:7.1f} ms")


def bench_inprocess(args, png, options, label) -> list[str]:
    from gen3dface.backend.pipeline.pipeline import HeadPipeline, PipelineConfig

    pipe = HeadPipeline(PipelineConfig(assets_dir=args.assets))
    reference_run(pipe, png, options)                    # warm: loads everything once
    ref = reference_run(pipe, png, options)
    print(f"\n[{label}] warm stage durations: " + ", ".join(
        f"{s} {ref[s][1] - ref[s][0]:.2f} s" for s in STAGES if s in ref))
    landed: dict = {}
    for stage in STAGES:
        if stage not in ref:
            continue
        dur = ref[stage][1] - ref[stage][0]
        for _ in range(args.repeats):
            for p in args.points:
                r = cancel_once(pipe, png, options, stage, p * dur)
                lat = r["latency_s"]
                print(f"  {stage:8s} at {p:4.2f} of {dur:5.2f} s: "
                      + (f"{lat * 1000:7.1f} ms (cancel landed in {r['where']}, "
                         f"{r['events_after']} progress events after it)"
                         if lat is not None else r["outcome"]), flush=True)
                if lat is not None:
                    landed.setdefault(r["where"].split()[0], []).append(lat)
    return [summarise(f"{label} {s}", landed[s]) for s in STAGES if s in landed]


def bench_cold(args, png, options) -> list[str]:
    """Fresh pipelines, cancelled while their first job loads its resources."""
    from gen3dface.backend.pipeline.pipeline import HeadPipeline, PipelineConfig

    lines = []
    for stage, delay in (("face", 0.3), ("fit", 0.15), ("texture", 0.1)):
        lats = []
        for _ in range(args.repeats):
            pipe = HeadPipeline(PipelineConfig(assets_dir=args.assets))
            if stage == "texture":       # everything but the baker already loaded
                pipe.run(png, None, options)
                for key in pipe._bg.cached_keys():
                    if key[0] == "baker":
                        pipe._bg.forget(key)
            r = cancel_once(pipe, png, options, stage, delay)
            lat = r["latency_s"]
            print(f"  cold {stage:8s} at {delay:.2f} s: "
                  + (f"{lat * 1000:7.1f} ms (in {r['where']})" if lat is not None
                     else r["outcome"]), flush=True)
            if lat is not None:
                lats.append(lat)
        lines.append(summarise(f"cold {stage}", lats))
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_serve(args, png, options) -> list[str]:
    from gen3dface.protocol.client import Client

    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-m", "gen3dface.backend", "serve", "--bind", endpoint,
           "--insecure", "--ephemeral", "--assets", str(args.assets)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        with Client(endpoint, insecure=True) as client:
            client.wait_connected(60)
            ref: dict = {}
            for _ in range(2):              # warm the server, then time the stages
                t0, marks = time.perf_counter(), {}
                client.run_job(png, options=options.to_dict(), deadline_s=300, on_progress=(
                    lambda s, f, m: marks.setdefault(s, [time.perf_counter() - t0] * 2)
                    .__setitem__(1, time.perf_counter() - t0)))
                ref = marks
            print("\n[serve] warm stage durations: " + ", ".join(
                f"{s} {ref[s][1] - ref[s][0]:.2f} s" for s in STAGES if s in ref))
            landed: dict = {}
            for stage in STAGES:
                if stage not in ref:
                    continue
                dur = ref[stage][1] - ref[stage][0]
                for _ in range(args.repeats):
                    for p in args.points:
                        lat, where = _serve_cancel_once(client, png, options, stage, p * dur)
                        print(f"  serve {stage:8s} at {p:4.2f} of {dur:5.2f} s: " + (
                            f"{lat * 1000:7.1f} ms (in {where})" if lat is not None else where),
                            flush=True)
                        if lat is not None:
                            landed.setdefault(where.split()[0], []).append(lat)
            lines += [summarise(f"serve {s}", landed[s]) for s in STAGES if s in landed]
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return lines


def _serve_cancel_once(client, png, options, stage, delay_s):
    h = client.submit(png, options=options.to_dict())
    t_stage = t_cancel = None
    where = ""
    deadline = time.monotonic() + 300
    while not h.done and time.monotonic() < deadline:
        for ev in client.poll(0.005):
            if ev.job is h and ev.kind == "progress" and h.stage == stage and t_stage is None:
                t_stage = time.perf_counter()
        if t_stage is not None and t_cancel is None and time.perf_counter() - t_stage >= delay_s:
            where = f"{h.stage} {h.fraction:.2f}"
            client.cancel(h)
            t_cancel = time.perf_counter()
    t_end = time.perf_counter()
    state = h.state
    client.forget(h)
    if state != "cancelled" or t_cancel is None:
        return None, f"ended {state}"
    return t_end - t_cancel, where


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--assets", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--points", default="0.25,0.5,0.75",
                    help="when to cancel, as fractions of each stage's warm duration")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--big", action="store_true", help="also a 2048-texel bake (slow)")
    ap.add_argument("--cold", action="store_true", help="also cancel fresh pipelines mid-load")
    ap.add_argument("--serve", action="store_true", help="also through `gen3dface serve`")
    args = ap.parse_args()
    args.points = [float(x) for x in args.points.split(",")]

    import cv2
    import skimage.data

    from gen3dface.backend.pipeline.pipeline import JobOptions

    rgb = skimage.data.astronaut()
    png = _png(rgb)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"photo astronaut 512x512; assets {args.assets}")
    opts = JobOptions()
    summary = bench_inprocess(args, png, opts, "warm")
    if args.big:
        big = _png(cv2.resize(rgb, (2048, 2048), interpolation=cv2.INTER_CUBIC))
        summary += bench_inprocess(args, big, JobOptions(texture_size=2048, quality="high"),
                                   "big")
    if args.cold:
        summary += bench_cold(args, png, opts)
    if args.serve:
        summary += bench_serve(args, png, opts)
    print("\nlatency from cancel() to JobCancelled (in-process) / to the client's `cancelled` "
          "event (serve), by the stage the cancel landed in:")
    for line in summary:
        print("  " + line)
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
