"""A bounded FIFO of waiting jobs, shared by the socket loop (puts, removes) and the worker
thread (takes). `put` never waits: a full queue raises QueueFull at once, and the server turns
that into a QUEUE_FULL error reply. A queued job can be taken out again (cancel) in O(n)."""
from __future__ import annotations

import collections
import threading

from .jobs import Job


class QueueFull(Exception):
    pass


class JobQueue:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, job: Job) -> int:
        """Append; returns the job's position (0 = next to run). Raises QueueFull."""
        with self._cond:
            if len(self._items) >= self.maxsize:
                raise QueueFull(f"the queue is full ({self.maxsize} jobs waiting)")
            self._items.append(job)
            self._cond.notify()
            return len(self._items) - 1

    def take(self, timeout: float | None = None) -> Job | None:
        """The next job, or None after `timeout` seconds or once closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._closed or not self._items:
                return None
            return self._items.popleft()

    def put_front(self, job: Job) -> None:
        """Put an admitted job back at the head, whatever the size (a job whose executor was
        lost goes first to the next free one: the Ray backend's retry)."""
        with self._cond:
            self._items.appendleft(job)
            self._cond.notify()

    def remove(self, job_id: str) -> Job | None:
        with self._cond:
            for job in self._items:
                if job.job_id == job_id:
                    self._items.remove(job)
                    return job
            return None

    def position(self, job_id: str) -> int | None:
        with self._cond:
            for i, job in enumerate(self._items):
                if job.job_id == job_id:
                    return i
            return None

    def drain(self) -> list[Job]:
        """Take every waiting job out (server shutdown)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
