"""Opaque calls that a cancel must not wait for: loading the head model, building the fitter
and the texture baker (their one-off precomputation), decoding the photo and mediapipe's face
analysis (native code with no place to check a CancelToken).

`BackgroundRunner` runs such calls one at a time on its own daemon thread; the job thread waits
for the result while polling its CancelToken, so a cancel raises `JobCancelled` within one poll
(20 ms) even while the call is still running. The abandoned call finishes on the runner thread
and its result is dropped, or, for `cached` resources, kept for the next job (a model that was
half loaded when the job was cancelled is not loaded twice). One thread means at most one
abandoned call runs beside the next job, and calls keep their order (mediapipe's graphs are
only ever used from this one thread).
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Callable, Hashable, TypeVar

from ..contracts import CancelToken

T = TypeVar("T")

POLL_S = 0.02


class BackgroundRunner:
    def __init__(self, name: str = "gen3dface-pipeline-bg"):
        self.name = name
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._cache: dict[Hashable, Future] = {}
        self._cache_lock = threading.Lock()

    # -- running ---------------------------------------------------------------------------
    def submit(self, fn: Callable[[], T]) -> "Future[T]":
        fut: Future = Future()
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        self._q.put((fn, fut))
        return fut

    def _loop(self) -> None:
        while True:
            fn, fut = self._q.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as e:          # noqa: BLE001 - handed to the waiting job
                fut.set_exception(e)
                del e
            else:
                fut.set_result(result)
                del result

    @staticmethod
    def wait(fut: "Future[T]", cancel: CancelToken | None, poll_s: float = POLL_S) -> T:
        """The call's result (or its exception); JobCancelled as soon as `cancel` is set."""
        while True:
            if cancel is not None:
                cancel.raise_if_cancelled()
            try:
                return fut.result(timeout=poll_s)
            except TimeoutError:
                continue

    def call(self, fn: Callable[[], T], cancel: CancelToken | None) -> T:
        """Run `fn` on the runner thread; wait for it unless the job is cancelled first."""
        return self.wait(self.submit(fn), cancel)

    # -- resources built once --------------------------------------------------------------
    def cached(self, key: Hashable, factory: Callable[[], T], cancel: CancelToken | None) -> T:
        """The resource `key`, built by `factory` on the runner thread the first time it is
        asked for. A build that failed is forgotten (the next job tries again); a build that
        a cancel left behind completes and is kept."""
        with self._cache_lock:
            fut = self._cache.get(key)
            if fut is None:
                fut = self._cache[key] = self.submit(factory)
        try:
            return self.wait(fut, cancel)
        except BaseException:
            if fut.done() and fut.exception() is not None:
                with self._cache_lock:
                    if self._cache.get(key) is fut:
                        del self._cache[key]
            raise

    def forget(self, key: Hashable) -> None:
        with self._cache_lock:
            self._cache.pop(key, None)

    def cached_keys(self) -> list:
        with self._cache_lock:
            return list(self._cache)
