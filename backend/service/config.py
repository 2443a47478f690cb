"""Settings of the backend service (`gen3dface serve`), one dataclass, no behaviour."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ON_CLIENT_LOST = ("cancel", "keep")


def default_state_dir() -> Path:
    """Where job records and kept results live unless --state-dir says otherwise:
    $XDG_STATE_HOME/gen3dface/serve (~/.local/state/gen3dface/serve)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "gen3dface" / "serve"


@dataclass
class ServiceConfig:
    bind: str = "tcp://127.0.0.1:5555"
    key: bytes | None = None            # HMAC key; None only together with insecure=True
    insecure: bool = False
    queue_size: int = 8                 # jobs WAITING (the running job is not counted)
    keep_results_s: float = 3600.0      # how long finished jobs and their results stay fetchable
    keep_results_bytes: int = 4 << 30   # and at most this many result bytes (oldest go first)
    on_client_lost: str = "keep"      # "cancel" | "keep": what happens to a vanished client's jobs
    state_dir: Path | None = None       # None: nothing persists across restarts (tests, --ephemeral)
    heartbeat_s: float = 1.0            # server -> client heartbeat period for clients with live jobs
    client_timeout_s: float = 3.0       # a client unheard of this long is gone, unless it announced
                                        # its own heartbeat_s (then 3 x that; protocol/SPEC.md s. 8)
    housekeeping_s: float = 0.1         # poll timeout of the socket loop
    max_part_bytes: int | None = None   # override the protocol's per-frame receive limit (tests)
    replay_max_nonces: int = 200_000    # replay cache entries in all (protocol/SPEC.md section 4)
    curve: object = None                # protocol.curve.ServerCurve: CURVE keys + allow-list (SPEC 12)
    result_part_bytes: int = 2 << 20    # (1.3) result_part size for a client that asks for
                                        # parts (SPEC 5.7): it hashes each while the next arrives
    result_parts_min_bytes: int | None = None   # ... for results at least this large; None:
                                        # 16 MiB without CURVE, any size with CURVE (server.py)

    def __post_init__(self):
        if self.on_client_lost not in ON_CLIENT_LOST:
            raise ValueError(f"on_client_lost must be one of {ON_CLIENT_LOST}, not {self.on_client_lost!r}")
        if self.queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if self.key is None and not self.insecure:
            raise ValueError("a key is required unless insecure=True")
        if self.keep_results_s < 0:
            raise ValueError("keep_results_s must be >= 0")
        if not 64 << 10 <= self.result_part_bytes <= 64 << 20:
            raise ValueError("result_part_bytes must be between 64 KiB and 64 MiB")
