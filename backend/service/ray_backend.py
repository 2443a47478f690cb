"""Jobs on a Ray cluster: `gen3dface serve --ray auto|ADDRESS|local`.

    clients ──► ROUTER ── socket loop ──► JobQueue ──► dispatcher thread i ──► worker actor i (Ray)
                              ▲                              │   ▲  streaming generator:
                              └───── Outbox ◄────────────────┘   └─ progress, previews, result

The front end is the in-process server's, unchanged (server.py: ZeroMQ, signing, queue policy,
journal, protocol). Only the executor differs: instead of the one in-process `Worker` thread,
`RayWorkerPool` runs one *dispatcher* thread per long-lived Ray worker actor. A dispatcher is a
`Worker` (same journal writes, same outbox events, same error mapping) whose workload is "run
this job on my actor": it takes a job from the shared JobQueue only while its actor is up and
idle, so a job waits in the server's queue until some worker of the cluster is free, and
QUEUE_FULL is decided on the cluster's total capacity (live workers running + `--queue`
waiting).

Worker actors (`WorkerActor`): one per GPU (`num_gpus=1`, the pipeline on "cuda", which Ray
maps to the GPU it assigned through CUDA_VISIBLE_DEVICES) or, on CPU clusters, `--ray-workers N`
with `--ray-cpus-per-worker` CPUs each. Each builds its workload (the HeadPipeline and its
models) once and keeps it warm between jobs. A job is one call of the actor's generator method
`run`, consumed as a Ray streaming generator (`num_returns="streaming"`): every progress event
and preview is yielded while the job runs, the result last. The actor is threaded
(`max_concurrency`), so `cancel(job_id)` and `ping()` are served while a job runs: cancel sets
the job's CancelToken, which the pipeline checks inside its stages.

Faults: a dispatcher watches its actor while a job runs: Ray reports a killed or crashed actor
on the generator at once (ActorDiedError), and a liveness `ping` unanswered for `liveness_s`
(default 3 s) catches a node that vanished without Ray noticing yet. The actor is then killed
for good (so a late result cannot arrive: the journal records one outcome per run) and
replaced; the job goes back to the head of the queue once, for the next free worker, when
its submit carried an idempotency key (its clients get a `progress` event that says so), and
otherwise ends with `error INTERRUPTED`, `details.reason` "worker_lost" (a submit with the key
runs it again). Only the server writes the journal and the results, so its exactly-once
guarantee holds whatever happens to the workers.

Ray is an optional dependency (`pip install gen3dface[ray]`); nothing here imports it before
a Ray mode is asked for.
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..contracts import CancelToken, JobCancelled, PipelineError
from .jobs import Job
from .worker import MAX_PREVIEW_BYTES, RetryElsewhere, Worker, _plain
from .workload import WorkloadFactory, free_memory, is_out_of_memory

log = logging.getLogger("gen3dface.service.ray")

EXIT_CLUSTER_UNREACHABLE = 4      # serve's exit status when the cluster cannot be reached
PING_EVERY_S = 0.5


class RayBackendError(RuntimeError):
    """The Ray backend cannot start (bad settings, no resources, workers failing to start)."""


class ClusterUnreachable(RayBackendError):
    """No Ray cluster answered at the address within the connect timeout."""

    def __init__(self, message: str, hung: bool = False):
        super().__init__(message)
        self.hung = hung          # ray.init is still blocked in a thread: exit with os._exit


@dataclass
class RaySettings:
    address: str = "auto"              # "auto", "HOST:PORT" (the head's GCS), or "local"
    workers: int | None = None         # None: one per GPU of the cluster
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None   # None: 1 on GPU clusters (workers None), else 0
    connect_timeout_s: float = 15.0
    start_timeout_s: float = 900.0     # until the first worker has built its pipeline
    liveness_s: float = 3.0            # no answer to pings for this long: the worker is lost
    retries: int = 1                   # reruns of an idempotent job whose worker was lost
    local_cpus: int | None = None      # "local": the private cluster's CPUs (default: all)
    local_object_store_mb: int = 200   # "local": its object store
    log_to_driver: bool = True


# ---- connecting ---------------------------------------------------------------------------
def import_ray():
    try:
        import ray
    except ImportError:
        raise RayBackendError("Ray is not installed: pip install 'gen3dface[ray]' (or pip "
                              "install ray) on the server and on every worker host") from None
    return ray


def _check_reachable(address: str, timeout_s: float) -> None:
    """A quick TCP connect to HOST:PORT, so a wrong address fails in seconds, not minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise RayBackendError(f"--ray wants auto, local or HOST:PORT (the head node's address, "
                              f"as `ray start --head` prints it), not {address!r}")
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise ClusterUnreachable(f"no Ray cluster answers at {address} ({e}); start the head "
                                 f"node with `ray start --head --port {port}` or fix --ray") from None


def connect(settings: RaySettings) -> bool:
    """Connect this process to the cluster (or start the private one of "local"); True when
    this call did it (then `ray.shutdown()` belongs to us), False when Ray was already up.
    Bounded: an address that does not answer is ClusterUnreachable within connect_timeout_s
    (ray.init alone retries for minutes)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, log_to_driver=settings.log_to_driver,
                  configure_logging=False)
    if settings.address == "local":
        ray.init(num_cpus=settings.local_cpus,
                 object_store_memory=int(settings.local_object_store_mb) << 20, **common)
        return True
    address = settings.address
    if address != "auto":
        _check_reachable(address, min(5.0, settings.connect_timeout_s))
    box: dict[str, Any] = {}

    def init() -> None:
        try:
            ray.init(address=address, **common)
            box["ok"] = True
        except BaseException as e:              # noqa: BLE001 - reported to the caller
            box["error"] = e

    t = threading.Thread(target=init, name="gen3dface-ray-connect", daemon=True)
    t.start()
    t.join(settings.connect_timeout_s)
    if t.is_alive():
        raise ClusterUnreachable(f"the Ray cluster at {address} did not accept this server within "
                                 f"{settings.connect_timeout_s:g} s (is it a Ray head's GCS port, "
                                 "and the same Ray version?)", hung=True)
    if "error" in box:
        e = box["error"]
        raise ClusterUnreachable(f"cannot join the Ray cluster at {address}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                 "; start one with `ray start --head`, or give --ray HOST:PORT") from None
    return True


# ---- the actor ------------------------------------------------------------------------------
class _QueueSink:
    def __init__(self, events: queue.SimpleQueue):
        self.events = events

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        self.events.put(("progress", str(stage), fraction, str(message)[:500]))

    def preview(self, name: str, png: bytes) -> None:
        if isinstance(png, (bytes, bytearray)) and len(png) <= MAX_PREVIEW_BYTES:
            self.events.put(("preview", str(name)[:100], bytes(png)))


class WorkerActor:
    """One Ray worker actor's body: one warm workload, one job at a time, cancellable.

    Made a Ray actor by `_actor_class()` (threaded: `run` streams a job while `cancel` and
    `ping` are answered). The job itself runs in a thread of its own so that the workload's
    progress callbacks can feed the generator."""

    def __init__(self, factory: WorkloadFactory, index: int):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.index = index
        self.workload = factory()
        self.capabilities = dict(self.workload.capabilities())
        self._tokens: dict[str, CancelToken] = {}
        self._lock = threading.Lock()
        self.jobs_run = 0

    def info(self) -> dict:
        import ray

        ctx = ray.get_runtime_context()
        return {"index": self.index, "pid": os.getpid(), "node_id": ctx.get_node_id(),
                "node_ip": ray.util.get_node_ip_address(), "actor_id": ctx.get_actor_id(),
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "device": self.capabilities.get("device"),
                "gpu_name": self.capabilities.get("gpu_name"), "capabilities": self.capabilities}

    def ping(self) -> int:
        return self.jobs_run

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            token = self._tokens.get(job_id)
        if token is not None:
            token.cancel()
        return token is not None

    def run(self, job_id: str, image: bytes, rig, options):
        """Generator: ("progress", stage, fraction, message) and ("preview", name, png) while
        the job runs, then one of ("result", glb, sidecar), ("cancelled",),
        ("error", code, message, details), ("oom", message), ("internal", text)."""
        events: queue.SimpleQueue = queue.SimpleQueue()
        token = CancelToken()
        with self._lock:
            self._tokens[job_id] = token
        self.jobs_run += 1

        def work() -> None:
            try:
                result = self.workload.run(image, rig, options, _QueueSink(events), token)
                token.raise_if_cancelled()
                events.put(("result", bytes(result.glb), dict(result.sidecar)))
            except JobCancelled:
                events.put(("cancelled",))
            except PipelineError as e:
                events.put(("error", e.code, e.message, _plain(e.details)))
            except BaseException as e:                 # noqa: BLE001 - reported, actor lives on
                if is_out_of_memory(e):
                    gpu = "cuda" in str(e).lower() or type(e).__name__ == "OutOfMemoryError"
                    events.put(("oom", f"{'CUDA' if gpu else 'host'} out of memory: {e}"[:500]))
                else:
                    logging.getLogger("gen3dface.service").exception("job %s failed", job_id)
                    events.put(("internal", f"{type(e).__name__}: {e}"[:500]))
                e.__traceback__ = None
                del e
                free_memory()

        thread = threading.Thread(target=work, name=f"gen3dface-job-{job_id[:8]}", daemon=True)
        thread.start()
        try:
            while True:
                event = events.get()
                yield event
                if event[0] not in ("progress", "preview"):
                    break
        finally:
            token.cancel()                  # the consumer went away early: stop the job too
            thread.join()
            with self._lock:
                self._tokens.pop(job_id, None)


_ACTOR_CLASS = None


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        ray = import_ray()
        _ACTOR_CLASS = ray.remote(max_concurrency=4, max_restarts=0)(WorkerActor)
    return _ACTOR_CLASS


# ---- the driver side ----------------------------------------------------------------------
@dataclass
class _Result:
    glb: bytes
    sidecar: dict


class WorkerLost(Exception):
    pass


class _ActorWorkload:
    """What a dispatcher's Worker.run_job calls as its workload: the job on the actor."""

    def __init__(self, dispatcher: "_Dispatcher"):
        self.d = dispatcher

    def capabilities(self) -> dict:
        return dict(self.d.info.get("capabilities") or {}) if self.d.info else {}

    def parse_options(self, options: dict):
        return self.d.pool.backend.parse_options(options)

    def run(self, image, rig, options, sink, cancel):
        ray = import_ray()
        d, job = self.d, self.d.current
        actor, label = d.actor, d.label()
        try:
            return self._stream(ray, actor, job, image, rig, options, sink, cancel)
        except WorkerLost as e:
            cause = str(e)
        d.actor_lost(actor)
        if d.pool.stopping:                       # the server is going down anyway
            job.cancel_reason = job.cancel_reason or "server_shutdown"
            raise JobCancelled(cause)
        d.pool.lost[job.job_id] += 1
        lost_msg = f"the Ray worker {label} was lost during this job ({cause})"
        if job.idempotency_key is not None and d.pool.lost[job.job_id] <= d.pool.backend.settings.retries:
            raise RetryElsewhere(f"{lost_msg}; retrying it on another worker")
        raise PipelineError("INTERRUPTED", f"{lost_msg}; submit it again with the same "
                            "idempotency_key to run it again", reason="worker_lost",
                            worker=d.index, node=d.info.get("node_ip") if d.info else None)

    def _stream(self, ray, actor, job: Job, image, rig, options, sink, cancel):
        liveness = self.d.pool.backend.settings.liveness_s
        gen = actor.run.options(num_returns="streaming").remote(job.job_id, image, rig, options)
        ended = threading.Event()

        def forward_cancel() -> None:       # the moment the server cancels, not at our next poll
            while not ended.is_set():
                if cancel.wait(0.25):
                    if not ended.is_set():
                        actor.cancel.remote(job.job_id)
                    return

        threading.Thread(target=forward_cancel, name=f"gen3dface-cancel-{job.job_id[:8]}",
                         daemon=True).start()
        try:
            return self._pump(ray, actor, gen, sink, liveness)
        finally:
            ended.set()

    def _pump(self, ray, actor, gen, sink, liveness: float):
        from ray.exceptions import RayError, RayTaskError

        ping_ref, ping_at, last_ok = None, 0.0, time.monotonic()
        while True:
            now = time.monotonic()
            if ping_ref is None and now - ping_at >= PING_EVERY_S:
                ping_ref, ping_at = actor.ping.remote(), now
            ready, _ = ray.wait([gen], timeout=0.1)
            if ping_ref is not None:
                done, _ = ray.wait([ping_ref], timeout=0)
                if done:
                    try:
                        ray.get(ping_ref)
                    except RayError as e:
                        raise WorkerLost(_why(e)) from None
                    ping_ref, last_ok = None, time.monotonic()
                elif time.monotonic() - last_ok > liveness:
                    raise WorkerLost(f"no answer to a liveness check for {liveness:g} s: its "
                                     "process or node is gone or hung")
            if not ready:
                continue
            try:
                ref = next(gen)
            except StopIteration:
                raise WorkerLost("the worker ended the job without a result") from None
            try:
                event = ray.get(ref)
            except RayTaskError as e:               # the actor's generator itself raised
                raise RuntimeError(f"on Ray worker {self.d.label()}: {e}"[:2000]) from None
            except RayError as e:
                raise WorkerLost(_why(e)) from None
            kind = event[0]
            if kind == "progress":
                sink.progress(event[1], event[2], event[3])
            elif kind == "preview":
                sink.preview(event[1], event[2])
            elif kind == "result":
                return _Result(event[1], event[2])
            elif kind == "cancelled":
                raise JobCancelled("the job was cancelled")
            elif kind == "error":
                raise PipelineError(event[1], event[2], **(event[3] or {}))
            elif kind == "oom":
                raise MemoryError(event[1])
            else:
                raise RuntimeError(f"on Ray worker {self.d.label()}: {event[1] if len(event) > 1 else kind}")


def _why(e: BaseException) -> str:
    name = type(e).__name__
    text = str(e)
    if "ray.kill" in text:
        return f"{name}: the actor was killed"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{name}: {first}"[:300]


class _Dispatcher(Worker):
    """A Worker thread bound to one Ray worker actor (replaced when it is lost)."""

    def __init__(self, pool: "RayWorkerPool", index: int, jobs, store, outbox, pending=None):
        super().__init__(_ActorWorkload(self), jobs, store, outbox)
        self.name = f"gen3dface-ray-dispatch-{index}"
        self.pool, self.index = pool, index
        self.actor = None
        self.info: dict | None = None
        self.pending = pending                # (handle, info ref) of an actor still starting
        self.state = "starting"
        self.starts = 0
        self._failures = 0

    def label(self) -> str:
        node = self.info.get("node_ip") if self.info else None
        return f"#{self.index}" + (f" on node {node}" if node else "")

    def run(self) -> None:
        while not self._stop_event.is_set():
            if self.actor is None and not self._ensure_actor():
                continue
            job = self.jobs.take(timeout=0.5)
            if job is None:
                continue
            self.current = job
            if self._stop_event.is_set():
                job.cancel_reason = job.cancel_reason or "server_shutdown"
                job.cancel.cancel()
            try:
                self.run_job(job)
            except Exception:
                log.exception("dispatcher %d failed on job %s", self.index, job.job_id)
            finally:
                self.current = None

    def _ensure_actor(self) -> bool:
        """Start (or wait for) this slot's actor; False while it is not ready (bounded waits)."""
        ray = import_ray()
        if self.pending is None:
            self.pending = self.pool.backend.new_actor(self.index)
            self.state = "starting"
        handle, ref = self.pending
        ready, _ = ray.wait([ref], timeout=0.5)
        if not ready:
            return False
        try:
            info = ray.get(ref)
        except Exception as e:                  # the constructor failed or its node died
            self.pending = None
            self._failures += 1
            self.state = "failed"
            log.error("Ray worker #%d could not start: %s", self.index, _why(e))
            _kill(handle)
            self._stop_event.wait(min(30.0, 2.0 ** self._failures))
            return False
        self.actor, self.info, self.pending = handle, info, None
        self.state, self._failures = "ready", 0
        self.starts += 1
        log.info("Ray worker #%d ready on node %s (%s, pid %s)", self.index, info.get("node_ip"),
                 info.get("device"), info.get("pid"))
        return True

    def actor_lost(self, actor) -> None:
        _kill(actor)
        if self.actor is actor:
            self.actor = None
        self.state = "lost"
        log.warning("Ray worker %s lost; starting a replacement", self.label())


def _kill(actor) -> None:
    try:
        import_ray().kill(actor, no_restart=True)
    except Exception:                           # already gone
        pass


class RayWorkerPool:
    """The server's executor in Ray mode: the Worker interface (start, stop, join, current,
    running_jobs) over one dispatcher per worker actor, plus cluster_info() for `hello`."""

    def __init__(self, backend: "RayBackend", jobs, store, outbox):
        self.backend, self.store, self.outbox = backend, store, outbox
        self.stopping = False
        self.lost: collections.Counter = collections.Counter()   # job id -> lost runs
        self.dispatchers = [_Dispatcher(self, i, jobs, store, outbox, pending=p)
                            for i, p in enumerate(backend.take_pending())]
        # the cluster's alive nodes and resources, refreshed by a thread of their own: the
        # socket loop only reads them (a GCS call there could stall pings behind it)
        self.nodes, self.resources = backend.nodes, dict(backend.resources)
        self._watch_stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch_cluster, name="gen3dface-ray-watch",
                                         daemon=True)

    @property
    def current(self) -> Job | None:
        jobs = self.running_jobs()
        return jobs[0] if jobs else None

    def running_jobs(self) -> list[Job]:
        return [j for j in (d.current for d in self.dispatchers) if j is not None]

    def start(self) -> None:
        for d in self.dispatchers:
            d.start()
        self._watcher.start()

    def _watch_cluster(self) -> None:
        ray = import_ray()
        while not self._watch_stop.wait(2.0):
            try:
                self.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
                res = ray.cluster_resources()
                self.resources = {k: float(v) for k, v in res.items() if k in ("CPU", "GPU")}
            except Exception:                   # the GCS is restarting: keep the last figures
                pass

    def is_alive(self) -> bool:
        return any(d.is_alive() for d in self.dispatchers)

    def stop(self) -> None:
        self.stopping = True
        self._watch_stop.set()
        for d in self.dispatchers:
            d.stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the dispatchers (their running jobs end INTERRUPTED once the actors stop
        them), then kill the actors and leave the cluster."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for d in self.dispatchers:
            if d.ident is not None:
                d.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for d in self.dispatchers:
            if d.actor is not None:
                _kill(d.actor)
            if d.pending is not None:
                _kill(d.pending[0])
        for d in self.dispatchers:              # a job still running sees its actor die and
            if d.ident is not None:             # ends INTERRUPTED (server_shutdown) in the outbox
                d.join(2.0)
        if self._watcher.ident is not None:
            self._watcher.join(5.0)
        self.backend.close()

    def cluster_info(self) -> dict:
        devices = []
        for d in self.dispatchers:
            info = d.info or {}
            devices.append({"worker": d.index, "state": d.state, "busy": d.current is not None,
                            "node": info.get("node_ip"), "device": info.get("device"),
                            "gpu_name": info.get("gpu_name"), "gpu_ids": info.get("gpu_ids") or []})
        live = sum(1 for d in self.dispatchers if d.actor is not None)
        return {"backend": "ray", "address": self.backend.settings.address, "nodes": self.nodes,
                "workers": live, "workers_configured": len(self.dispatchers),
                "running": len(self.running_jobs()), "capacity": live + self.backend.queue_size_hint,
                "resources": self.resources, "devices": devices}


class RayBackend:
    """The workload the Server gets in Ray mode: it parses options and reports capabilities
    locally, and brings its own executor (`make_worker`: the RayWorkerPool)."""

    def __init__(self, factory: WorkloadFactory, parse_options: Callable[[dict], Any],
                 settings: RaySettings | None = None, queue_size_hint: int = 0):
        self.settings = settings or RaySettings()
        self.factory, self._parse = factory, parse_options
        self.queue_size_hint = queue_size_hint
        self.owned = connect(self.settings)
        self._pending: list | None = None
        self.pool: RayWorkerPool | None = None
        try:
            self._start_workers()
        except BaseException:
            self.close()
            raise

    def _start_workers(self) -> None:
        ray = import_ray()
        s = self.settings
        res = ray.cluster_resources()
        self.resources = {k: float(v) for k, v in res.items() if k in ("CPU", "GPU")}
        self.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        gpus = int(res.get("GPU", 0))
        if s.workers is None:
            if gpus < 1:
                raise RayBackendError(f"the Ray cluster has no GPUs ({res.get('CPU', 0):g} CPUs): "
                                      "give --ray-workers N for N CPU workers")
            self.n_workers, self.num_gpus = gpus, 1.0 if s.gpus_per_worker is None else s.gpus_per_worker
        else:
            if s.workers < 1:
                raise RayBackendError("--ray-workers must be at least 1")
            self.n_workers, self.num_gpus = s.workers, s.gpus_per_worker or 0.0
        short = self.num_gpus * self.n_workers > gpus or s.cpus_per_worker * self.n_workers > res.get("CPU", 0)
        if short:
            log.warning("the cluster has %s; %d workers x (%g CPU, %g GPU) will not all start until "
                        "more nodes join", self.resources, self.n_workers, s.cpus_per_worker, self.num_gpus)
        self._pending = [self.new_actor(i) for i in range(self.n_workers)]
        refs = [ref for _, ref in self._pending]
        deadline = time.monotonic() + s.start_timeout_s
        errors, self.first_info = [], None
        # until the first worker is up; and, when the cluster has room for all, until all are
        # (so the first `capabilities` already counts them), failures left to the dispatchers
        while refs and time.monotonic() < deadline and (self.first_info is None or not short):
            ready, refs = ray.wait(refs, num_returns=1, timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            for ref in ready:
                try:
                    info = ray.get(ref)
                    self.first_info = self.first_info or info
                except Exception as e:
                    errors.append(_why(e))
        if self.first_info is not None:
            return
        if errors:
            raise RayBackendError(f"the Ray workers could not start: {errors[0]}")
        raise RayBackendError(f"no Ray worker started within {s.start_timeout_s:g} s (the cluster "
                              f"has {self.resources}; each worker asks for {s.cpus_per_worker:g} CPU "
                              f"and {self.num_gpus:g} GPU)")

    def new_actor(self, index: int):
        cls = _actor_class()
        handle = cls.options(num_cpus=self.settings.cpus_per_worker, num_gpus=self.num_gpus,
                             name=None).remote(self.factory, index)
        return handle, handle.info.remote()

    def take_pending(self) -> list:
        pending, self._pending = self._pending or [], None
        return pending

    # the Workload interface, on the server's side
    def capabilities(self) -> dict:
        return dict(self.first_info.get("capabilities") or {})

    def parse_options(self, options: dict):
        return self._parse(options)

    def run(self, *a, **k):
        raise RuntimeError("in Ray mode jobs run on the worker actors (make_worker)")

    def make_worker(self, jobs, store, outbox) -> RayWorkerPool:
        self.pool = RayWorkerPool(self, jobs, store, outbox)
        return self.pool

    def close(self) -> None:
        """Kill actors not yet handed to a pool and leave the cluster if we joined it."""
        for handle, _ in self._pending or []:
            _kill(handle)
        self._pending = None
        if self.owned:
            self.owned = False
            try:
                import_ray().shutdown()
            except Exception:
                log.exception("ray.shutdown failed")


# ---- `gen3dface serve` ----------------------------------------------------------------------
def add_arguments(p) -> None:
    g = p.add_argument_group("Ray cluster (scale out; pip install 'gen3dface[ray]')")
    g.add_argument("--ray", metavar="auto|HOST:PORT|local",
                   help="run jobs on a Ray cluster instead of in this process: auto (the cluster "
                        "this host joined with `ray start`), HOST:PORT (a head node's address) or "
                        "local (a private one-node cluster); one worker per GPU unless --ray-workers")
    g.add_argument("--ray-workers", type=int, metavar="N",
                   help="N worker actors (CPU clusters; with --device cuda each takes a GPU)")
    g.add_argument("--ray-cpus-per-worker", type=float, default=1.0, metavar="C",
                   help="CPUs each worker actor reserves (default 1)")
    g.add_argument("--ray-connect-timeout", type=float, default=15.0, metavar="S",
                   help="give up joining the cluster after S seconds (default 15; exit status 4)")


def backend_from_args(args, queue_size: int) -> RayBackend:
    """The RayBackend `serve --ray` runs (the real pipeline on every worker actor)."""
    from ..pipeline.pipeline import JobOptions
    from .workload import head_pipeline_factory

    gpu = args.ray_workers is None or str(args.device).startswith("cuda")
    settings = RaySettings(address=args.ray, workers=args.ray_workers,
                           cpus_per_worker=args.ray_cpus_per_worker,
                           gpus_per_worker=1.0 if gpu else 0.0,
                           connect_timeout_s=args.ray_connect_timeout)
    device = "cuda" if gpu else "cpu"
    return RayBackend(head_pipeline_factory(args.assets, device, args.checkpoint),
                      JobOptions.from_dict, settings, queue_size_hint=queue_size)
