"""Receive-side buffers for results that arrive as result_part messages (SPEC.md 5.7, 1.3).

Used only by the client's core (client.py); no sockets here:

- _Parts          one result being assembled: binds each verified piece to its place (index,
                  offset, the announcement's sha256 and parent_id) and stores it, in one
                  anonymous mapping (zero_copy) or as the received frames joined at the end.
- _SpareBuffers   the mappings of the last results assembled, reused for the next result of
                  about their size once the caller has let go (their pages are faulted in).
- _Prefault       faults in a fresh mapping's pages on a worker thread ahead of the copies.
"""
from __future__ import annotations

import hashlib
import mmap
import threading

from .envelope import Message


class _Parts:
    """A result announced with `parts` (SPEC 5.7, 1.3) while its result_part messages arrive.
    Each part's signature (checked by the codec) covers its bytes; the checks here bind it to
    its place: the announcement's job, sha256 and parent_id, the next index, the offset."""

    def __init__(self, msg: Message, c: dict, zero_copy: bool, insecure: bool, pool=None,
                 spare: "_SpareBuffers | None" = None):
        self.parent, self.sha256 = msg.parent_id, c["sha256"]
        self.count, self.size, self.content = c["parts"], c["size"], c
        self.next = self.offset = 0
        # zero_copy: each piece is copied into one anonymous mapping as it arrives (while the
        # next piece is in flight), whose pages a worker faults in ahead of the copies
        # without holding the GIL (_Prefault: faulting 64 MB of fresh pages costs 20-40 ms
        # here, more than the copy); bytes: the pieces (views of the received frames) are
        # joined once at the end, the one copy that makes bytes
        self.buf, fresh = None, True
        if zero_copy:
            m, fresh = spare.take(self.size) if spare is not None else (mmap.mmap(-1, self.size), True)
            self.buf = memoryview(m)[:self.size]
        self._faulted = None
        if self.buf is not None and pool is not None and fresh:
            self._faulted = _Prefault(self.buf, -(-self.size // self.count))
            pool.submit(self._faulted.run)
        self.chunks: list = []
        # insecure mode verifies nothing else: the whole-file SHA-256, hashed as pieces arrive
        self.hasher = hashlib.sha256() if insecure else None

    def add(self, data) -> bool:
        """Store the next piece; True once the last one is in."""
        n = len(data)
        if self.buf is not None:
            if self._faulted is not None:
                self._faulted.wait(self.offset + n)
            self.buf[self.offset:self.offset + n] = data
        else:
            self.chunks.append(data)
        if self.hasher is not None:
            self.hasher.update(data)
        self.next += 1
        self.offset += n
        return self.next == self.count

    def glb(self):
        if self.buf is not None:
            out = self.buf.toreadonly()
            self.buf.release()          # only the caller's view keeps the mapping in use now
            self.buf = None
            return out
        return b"".join(self.chunks)


class _SpareBuffers:
    """The mappings of the last results assembled (zero_copy), reused for the next result of
    about the same size once the caller has let go of the previous one: its pages are
    already faulted in, which on this VM saves 20-40 ms per 64 MB. "Let go" is what CPython
    itself tracks: a mapping with a buffer exported (any memoryview, numpy array, ctypes
    object over it) cannot be resized, so a same-size resize() succeeds only when nobody
    holds it. Where resize() is not available the check fails and nothing is reused. At
    most KEEP mappings of at most MAX_BYTES each are remembered (they stay resident)."""

    KEEP = 2
    MAX_BYTES = 256 << 20

    def __init__(self):
        self.maps: list = []

    @staticmethod
    def _free(m) -> bool:
        try:
            m.resize(len(m))
            return True
        except (BufferError, OSError, ValueError, SystemError, TypeError):
            return False

    def take(self, size: int):
        """(mapping of at least `size` bytes, fresh?)."""
        for m in self.maps:
            if size <= len(m) <= max(2 * size, size + (1 << 20)) and self._free(m):
                self.maps.remove(m)
                self.maps.insert(0, m)
                return m, False
        m = mmap.mmap(-1, size)
        if size <= self.MAX_BYTES:
            self.maps.insert(0, m)
            del self.maps[self.KEEP:]
        return m, True


class _Prefault:
    """Faults in the pages of a fresh mapping on a worker thread, one piece at a time, by
    reading /dev/zero into it (the GIL is released during the read: the receiving thread,
    and Blender's UI thread, run meanwhile). The receiving thread copies a piece into the
    mapping only after this has passed it (`wait`), so the two never write the same bytes.
    Without /dev/zero (Windows) the pages fault in during the copy instead."""

    def __init__(self, buf: memoryview, step: int):
        self.buf, self.step = buf, max(1, step)
        self.upto = 0
        self.cond = threading.Condition()

    def run(self) -> None:
        n = len(self.buf)
        try:
            with open("/dev/zero", "rb", buffering=0) as f:
                while self.upto < n:
                    end = min(n, self.upto + self.step)
                    pos = self.upto
                    while pos < end:
                        got = f.readinto(self.buf[pos:end])
                        if not got:
                            raise OSError("short read")
                        pos += got
                    with self.cond:
                        self.upto = end
                        self.cond.notify_all()
        except OSError:
            pass
        finally:
            with self.cond:
                self.upto = n          # done, or given up: the copy faults pages itself
                self.cond.notify_all()

    def wait(self, upto: int) -> None:
        with self.cond:
            while self.upto < upto:
                self.cond.wait()
