#!/usr/bin/env python
"""Fault tests of the backend service on loopback (test harness workload; prints figures).

    python scripts/fault_service.py kill       # SIGKILL mid-job, restart, exactly-once
    python scripts/fault_service.py fuzz       # 10,000 malformed messages: alive, RSS, replies
    python scripts/fault_service.py auth       # unsigned / wrong key / tampered / replayed / stale
    python scripts/fault_service.py oversize   # oversized parts dropped: server RSS growth
    python scripts/fault_service.py bomb       # 48 KB PNG declaring 400 MP: time to refusal
    python scripts/fault_service.py cancel     # cancel a queued / a running job: latency
    python scripts/fault_service.py crash      # issue 19's messages + 10,000 hostile envelopes
    python scripts/fault_service.py lockout    # a flood of future-dated messages vs others
    python scripts/fault_service.py proxy      # clients behind a zmq.proxy(ROUTER, DEALER)
    python scripts/fault_service.py all

Every scenario runs the harness server (python -m gen3dface.backend.service.harness) in a
child process on 127.0.0.1, with a fresh key file and state folder, and stops by itself.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from gen3dface.backend.images import encode_png
from gen3dface.backend.service.harness import (HarnessProcess, RawClient, expected_result,
                                               free_tcp_port, png_bomb, rss_mb)
from gen3dface.protocol import messages
from gen3dface.protocol.client import Client, ClientConfig
from gen3dface.protocol.envelope import PROTOCOL_VERSION, Codec, Limits
from gen3dface.protocol.signing import Signer, generate_key_file

RESULTS: dict[str, bool] = {}


def photo(seed: int) -> bytes:
    return encode_png(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def report(name: str, ok: bool) -> None:
    RESULTS[name] = ok
    print(f"  -> {name}: {'PASS' if ok else 'FAIL'}\n", flush=True)


def scenario_kill(tmp: Path, n_clients: int = 4) -> None:
    print("[kill] SIGKILL the server mid-job; clients must notice within 5 s; after a restart "
          "the resubmissions (same idempotency keys) complete exactly once")
    key_file = tmp / "kill.key"
    key = generate_key_file(key_file)
    completions, port = tmp / "kill-completions.txt", free_tcp_port()
    opts = dict(key_file=key_file, state_dir=tmp / "kill-state", completions=completions,
                events=40, step_s=0.05, result_mb=30.0, heartbeat_s=1.0)
    images = [photo(100 + i) for i in range(n_clients)]
    first = HarnessProcess(port, **opts).start()
    cfg = lambda: ClientConfig(heartbeat_s=1.0, backoff_initial_s=0.5, backoff_max_s=1.0)  # noqa: E731
    clients = [Client(first.endpoint, key=key, config=cfg()) for _ in range(n_clients)]
    jobs = [c.submit(img, idempotency_key=f"kill-{i}") for i, (c, img) in enumerate(zip(clients, images))]
    while not any(j.stage for j in jobs):                      # one job is running
        for c in clients:
            c.poll(0.02)
    first.kill()
    t_kill = time.monotonic()
    noticed = [None] * n_clients
    while None in noticed and time.monotonic() - t_kill < 15:
        for i, c in enumerate(clients):
            if any(e.kind == "disconnected" for e in c.poll(0.02)) and noticed[i] is None:
                noticed[i] = time.monotonic() - t_kill
    print(f"  server killed with {sum(j.stage is not None for j in jobs)} job running, "
          f"{sum(j.stage is None for j in jobs)} queued")
    print(f"  clients noticed after: {', '.join(f'{t:.2f} s' if t else 'never' for t in noticed)}")
    with HarnessProcess(port, **opts) as second:
        t_restart = time.monotonic()
        while not all(j.done for j in jobs) and time.monotonic() - t_restart < 120:
            for c in clients:
                c.poll(0.02)
        done_ok = [j.state == "done" and j.glb == expected_result(img, 30 << 20) for j, img in zip(jobs, images)]
        print(f"  after restart: {sum(done_ok)}/{n_clients} jobs done with the right bytes in "
              f"{time.monotonic() - t_restart:.1f} s")
        # the same keys again from brand-new clients: the same jobs, nothing runs again
        same = 0
        for i, img in enumerate(images):
            with Client(second.endpoint, key=key) as c:
                r = c.run_job(img, idempotency_key=f"kill-{i}", deadline_s=60)
                same += r.job_id == jobs[i].job_id and r.glb == jobs[i].glb
        lines = completions.read_text().split()
        per_image = [lines.count(hashlib.sha256(img).hexdigest()) for img in images]
        print(f"  resubmitted again from new clients: {same}/{n_clients} got the same job; "
              f"completions per key: {per_image}")
        alive = second.proc.poll() is None
    for c in clients:
        c.close()
    report("kill", all(t is not None and t < 5 for t in noticed) and all(done_ok)
           and same == n_clients and per_image == [1] * n_clients and alive)


def _fuzz(rng: random.Random, good: list, signer: Signer) -> list:
    frames = [bytes(f) for f in good]
    kind = rng.randrange(12)
    if kind == 0:
        return frames[: rng.randrange(1, 4)]
    if kind == 1:
        return frames + [b"x"] * rng.randrange(9, 30)
    if kind == 2:
        frames[2] = frames[2][: rng.randrange(len(frames[2]))]
    elif kind == 3:
        frames[3] = b"{not json" + os.urandom(rng.randrange(40))
    elif kind == 4:
        frames[2] = frames[2].replace(b'"msg_type":"submit"', b'"msg_type":"' + rng.choice(
            [b"nope", b"result", b"capabilities", b"x" * 80, b"\xff\xfe"]) + b'"')
    elif kind == 5:
        frames[3] = rng.choice([b"[]", b"1", b'"s"', b"null", b'{"idempotency_key": 5}',
                                b'{"idempotency_key":"k","image":{"media_type":"image/gif"}}',
                                b'{"rig": {"cameras": 7}}', b"[" * 5000 + b"]" * 5000])
    elif kind == 6:
        frames[0] = rng.choice([b"G3F2", b"XXXX", b"", b"G3F1G3F1"])
    elif kind == 7:
        return [os.urandom(rng.randrange(1, 200)) for _ in range(rng.randrange(1, 8))]
    elif kind == 8:
        frames[2] = frames[2].replace(b'"version":"%s"' % PROTOCOL_VERSION.encode(),
                                      b'"version":' + rng.choice([b"1", b'"2.0"', b"null"]))
    elif kind == 9:
        frames[4] = frames[4][: rng.randrange(len(frames[4]))]      # truncated photo
    elif kind == 10:
        frames[1] = os.urandom(32).hex().encode()                    # random signature
        return frames
    else:
        b = bytearray(frames[rng.randrange(1, len(frames))])
        for _ in range(rng.randrange(1, 8)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        frames[1 + rng.randrange(len(frames) - 1)] = bytes(b)
    if rng.random() < 0.5 and len(frames) >= 4:                       # re-sign: get past AUTH
        frames[1] = signer.sign(frames[2], frames[3], [hashlib.sha256(f).digest() for f in frames[4:]])
    return frames


def _reply_code(frames: list) -> str:
    """The error code of a reply (or its msg_type when it is not an error)."""
    try:
        return json.loads(frames[3]).get("code") or json.loads(frames[2])["msg_type"]
    except (ValueError, KeyError, IndexError):
        return "?"


def scenario_fuzz(tmp: Path, n: int = 10_000) -> None:
    print(f"[fuzz] {n} malformed or fuzzed messages (half of them validly signed after the damage)")
    key_file = tmp / "fuzz.key"
    key = generate_key_file(key_file)
    rng = random.Random(20240601)
    signer = Signer(key)
    codec = Codec(signer, Limits.for_client())
    with HarnessProcess(key_file=key_file, state_dir=tmp / "fuzz-state", result_mb=0.01,
                        completions=tmp / "fuzz-completions.txt") as hp:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(hp.endpoint)
        # warm up (first replies, allocator), then measure
        ping = codec.encode(messages.ping())
        sock.send_multipart(ping)
        sock.poll(5000) and sock.recv_multipart()
        rss0 = rss_mb(hp.pid)
        sent = direct = events = 0
        codes: dict[str, int] = {}

        def take(frames) -> None:
            """Count one message from the server: a direct reply (error without job_id, or
            accepted for a fuzzed message that was still valid) or a job event."""
            nonlocal direct, events
            try:
                header, content = json.loads(frames[2]), json.loads(frames[3])
            except (ValueError, IndexError):
                codes["unreadable reply"] = codes.get("unreadable reply", 0) + 1
                return
            kind = header.get("msg_type")
            if kind == "accepted" or (kind == "error" and content.get("job_id") is None):
                direct += 1
                name = content.get("code") if kind == "error" else "accepted"
                codes[name] = codes.get(name, 0) + 1
            elif kind == "ping":
                sock.send_multipart(codec.encode(messages.Message("pong", {})))
            else:
                events += 1

        t0 = time.perf_counter()
        for i in range(n):
            good = codec.encode(messages.submit(photo(i % 50), "image/png", f"fuzz-{i}",
                                                options={"steps": 1, "step_s": 0}))
            sock.send_multipart(_fuzz(rng, good, signer))
            sent += 1
            while sock.poll(0):
                take(sock.recv_multipart())
        deadline = time.monotonic() + 20
        while direct < sent and time.monotonic() < deadline:
            if sock.poll(200):
                take(sock.recv_multipart())
        wall = time.perf_counter() - t0
        time.sleep(1.0)
        while sock.poll(0):
            take(sock.recv_multipart())
        rss1 = rss_mb(hp.pid)
        ping = messages.ping()
        sock.send_multipart(codec.encode(ping))
        pong = False
        end = time.monotonic() + 5
        while not pong and time.monotonic() < end:
            if sock.poll(200):
                f = sock.recv_multipart()
                pong = json.loads(f[2]).get("parent_id") == ping.msg_id
        alive = hp.proc.poll() is None
        sock.close(0)
        ran = len((tmp / "fuzz-completions.txt").read_text().split()) if (tmp / "fuzz-completions.txt").exists() else 0
    errors = sum(v for k, v in codes.items() if k != "accepted")
    print(f"  sent {sent} in {wall:.1f} s; direct replies {direct} ({direct / sent:.1%}): "
          f"{errors} errors, {codes.get('accepted', 0)} accepted (fuzzed but still valid); "
          f"{events} job events")
    print(f"  error codes {dict(sorted(codes.items()))}")
    print(f"  server RSS {rss0:.1f} -> {rss1:.1f} MB (growth {rss1 - rss0:+.1f} MB); alive {alive}; "
          f"answers ping {pong}; fuzzed-but-valid jobs that ran {ran}")
    report("fuzz", alive and pong and direct == sent and rss1 - rss0 < 50)


def scenario_auth(tmp: Path, n_each: int = 50) -> None:
    print(f"[auth] {n_each} each of unsigned, wrong-key, tampered-binary, tampered-JSON, replayed, "
          "stale-timestamp submits")
    key_file = tmp / "auth.key"
    key = generate_key_file(key_file)
    other = Signer(os.urandom(32).hex().encode())
    good_codec = Codec(Signer(key), Limits.for_client())
    stale_codec = Codec(Signer(key), Limits.for_client(), clock=lambda: time.time() - 3600)
    completions = tmp / "auth-completions.txt"
    with HarnessProcess(key_file=key_file, state_dir=tmp / "auth-state", result_mb=0.01, events=2,
                        step_s=0.0, completions=completions) as hp:
        c = RawClient(hp.endpoint, key)
        table = {}
        genuine = 0
        for attack in ("unsigned", "wrong_key", "tampered_binary", "tampered_json", "replayed", "stale"):
            rejected = accepted = 0
            for i in range(n_each):
                msg = messages.submit(photo(1000 + i), "image/png", f"{attack}-{i}")
                frames = [bytes(f) for f in good_codec.encode(msg)]
                if attack == "unsigned":
                    frames[1] = b""
                elif attack == "wrong_key":
                    frames = Codec(other, Limits.for_client()).encode(msg)
                elif attack == "tampered_binary":
                    b = bytearray(frames[4]); b[len(b) // 2] ^= 0x01; frames[4] = bytes(b)  # noqa: E702
                elif attack == "tampered_json":
                    frames[3] = frames[3].replace(b'"options":{}', b'"options":{"steps":9}')
                elif attack == "stale":
                    frames = stale_codec.encode(msg)
                elif attack == "replayed":
                    c.send_frames(frames)                 # the genuine one
                    genuine += 1
                c.send_frames(frames)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    m = c.recv(1.0)
                    if m is None:
                        break
                    if m.msg_type == "error" and m.content["code"] == "AUTH":
                        rejected += 1
                        break
                    if m.msg_type == "accepted" and m.content["idempotency_key"] == f"{attack}-{i}":
                        accepted += 1
            table[attack] = (rejected, accepted)
        time.sleep(0.5)
        ran = len(completions.read_text().split()) if completions.exists() else 0
        alive = hp.proc.poll() is None
        c.close()
    for attack, (rej, acc) in table.items():
        extra = " (the genuine originals: accepted)" if attack == "replayed" else ""
        print(f"  {attack:16s} rejected {rej}/{n_each}  accepted {acc}{extra}")
    print(f"  jobs that ran: {ran} (only the {genuine} genuine originals of the replays); alive {alive}")
    ok = all(rej == n_each for rej, _ in table.values()) and ran == genuine and alive
    ok = ok and all(acc == 0 for a, (_, acc) in table.items() if a != "replayed")
    report("auth", ok)


def scenario_oversize(tmp: Path, n: int = 5, part_mb: int = 200) -> None:
    print(f"[oversize] {n} messages with a {part_mb} MB part (limit 64 MiB per part)")
    with HarnessProcess(result_mb=0.01) as hp:
        rss0 = rss_mb(hp.pid)
        big = os.urandom(1 << 20) * part_mb
        codec = Codec(Signer(None), Limits.for_client())
        peak = rss0
        t0 = time.perf_counter()
        for i in range(n):
            c = RawClient(hp.endpoint, None)
            c.send(messages.submit(big, "image/png", f"big-{i}"))
            end = time.monotonic() + 3
            while time.monotonic() < end:
                peak = max(peak, rss_mb(hp.pid))
                if c.recv(0.05) is not None:
                    break
            c.close()
        wall = time.perf_counter() - t0
        c = RawClient(hp.endpoint, None)
        c.send(messages.ping())
        pong = c.recv_until(("pong",), timeout_s=5)[-1].msg_type == "pong"
        c.close()
        rss1 = rss_mb(hp.pid)
        del big, codec
    print(f"  server RSS {rss0:.1f} MB, peak {peak:.1f} MB, after {rss1:.1f} MB (growth "
          f"{peak - rss0:+.1f} MB) over {n} x {part_mb} MB in {wall:.1f} s; answers ping {pong}")
    report("oversize", pong and peak - rss0 < 10)


def scenario_bomb(tmp: Path, n: int = 50) -> None:
    bomb = png_bomb(20000, 20000, 48 * 1024)
    print(f"[bomb] a {len(bomb) / 1024:.0f} KB PNG declaring 20000x20000 (400 MP), {n} times")
    with HarnessProcess(result_mb=0.01) as hp:
        c = RawClient(hp.endpoint, None)
        c.send(messages.ping())
        c.recv_until(("pong",))
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            c.send(messages.submit(bomb, "image/png", f"bomb-{i}"))
            m = c.recv_until(("error", "accepted"))[-1]
            times.append((time.perf_counter() - t0) * 1000)
            assert m.content.get("code") == "BAD_IMAGE", m.content
        c.close()
        rss = rss_mb(hp.pid)
    print(f"  refused with BAD_IMAGE, round trip: median {statistics.median(times):.1f} ms, max "
          f"{max(times):.1f} ms; server RSS after {rss:.0f} MB")
    report("bomb", max(times) < 50)


def scenario_cancel(tmp: Path, n: int = 10) -> None:
    print(f"[cancel] {n} times: cancel a queued job and a running one (harness steps of 50 ms)")
    with HarnessProcess(events=400, step_s=0.05, result_mb=0.01) as hp:
        c = RawClient(hp.endpoint, None)
        queued_ms, running_ms = [], []
        for i in range(n):
            c.send(messages.submit(photo(2000 + 2 * i), "image/png", f"run-{i}"))
            run_id = c.recv_until(("accepted",))[-1].content["job_id"]
            c.send(messages.submit(photo(2001 + 2 * i), "image/png", f"wait-{i}"))
            wait_id = c.recv_until(("accepted",))[-1].content["job_id"]
            c.recv_until(("progress",), job_id=run_id)
            t0 = time.perf_counter()
            c.send(messages.job_request("cancel", wait_id))
            c.recv_until(("cancel_reply",))
            queued_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            c.send(messages.job_request("cancel", run_id))
            end = c.recv_until(("error",), job_id=run_id, timeout_s=10)[-1]
            running_ms.append((time.perf_counter() - t0) * 1000)
            assert end.content["code"] == "CANCELLED"
        c.send(messages.job_request("cancel", "0" * 32))              # unknown: a no-op
        noop = c.recv_until(("cancel_reply",))[-1].content
        c.close()
    print(f"  queued: median {statistics.median(queued_ms):.1f} ms, max {max(queued_ms):.1f} ms; "
          f"running: median {statistics.median(running_ms):.1f} ms, max {max(running_ms):.1f} ms; "
          f"unknown job -> {noop['state']} (no-op)")
    report("cancel", max(queued_ms) < 100 and max(running_ms) < 2000 and noop["known"] is False)


# ---- issue 19: crash-proofing, replay lock-out, proxies --------------------------------------

NASTY = ["\ud800", "a\udfffb", 10 ** 400, -10 ** 400, 10 ** 30, -1, 0, True, None, [], {},
         [[["x"]]], "１.１", "1.1\n", "", "x" * 300, 1e308, "0" * 32, "image/png"]
HEADER_FIELDS = ("protocol", "version", "msg_id", "msg_type", "parent_id", "session",
                 "timestamp", "nonce")
CONTENT_FIELDS = ("idempotency_key", "image", "options", "rig", "job_id", "heartbeat_s",
                  "client", "instance", "sidecar", "code", "message", "name")
TYPES = ("hello", "submit", "cancel", "status", "fetch_result", "ping", "result", "error",
         "capabilities", "progress", "nope")


def _hostile(rng: random.Random, key: bytes) -> tuple[list, str | None]:
    """One hostile envelope: every header/content field valid, missing or nasty; signed with
    the key, a wrong key, or not at all. Returns (frames, msg_id when it is a valid id)."""
    msg_id = os.urandom(8).hex()
    header = {"protocol": "gen3dface", "version": PROTOCOL_VERSION, "msg_id": msg_id,
              "msg_type": rng.choice(TYPES), "parent_id": None, "session": None,
              "timestamp": time.time(), "nonce": os.urandom(16).hex()}
    for name in HEADER_FIELDS:
        r = rng.random()
        if r < 0.15:
            header[name] = rng.choice(NASTY)
        elif r < 0.2:
            del header[name]
    content = {"idempotency_key": os.urandom(8).hex(), "job_id": "0" * 32,
               "image": {"media_type": "image/png", "name": "p.png"}}
    for name in CONTENT_FIELDS:
        if rng.random() < 0.3:
            content[name] = rng.choice(NASTY)
    deep = rng.random() < 0.05
    h = json.dumps(header).encode()
    c = (b"[" * 3000 + b"]" * 3000) if deep else json.dumps(content).encode()
    bufs = [photo(rng.randrange(50))] if rng.random() < 0.5 else [os.urandom(rng.randrange(1, 64))]
    how = rng.choice(["signed", "signed", "unsigned", "wrong"])
    sig = b"" if how == "unsigned" else Signer(key if how == "signed" else b"w" * 32).sign(
        h, c, [hashlib.sha256(b).digest() for b in bufs])
    mid = header.get("msg_id")
    valid = isinstance(mid, str) and re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", mid) is not None
    return [b"G3F1", sig, h, c, *bufs], mid if valid else None


def _exact_issue_messages(key: bytes) -> list[tuple[str, list, str | None]]:
    """The messages of issue 19's report, byte for byte (the header JSON written by hand)."""
    def frames(header: dict, content=None, bufs=(), sign=True, k=key):
        full = {"protocol": "gen3dface", "version": "1.1", "msg_id": "m1", "msg_type": "ping",
                "parent_id": None, "session": None, "timestamp": time.time(),
                "nonce": os.urandom(16).hex(), **header}
        h, c = json.dumps(full).encode(), json.dumps(content or {}).encode()
        sig = Signer(k).sign(h, c, [hashlib.sha256(b).digest() for b in bufs]) if sign else b""
        return [b"G3F1", sig, h, c, *bufs]
    return [
        ("lone surrogate msg_id, unsigned", frames({"msg_id": "\ud800"}, sign=False), None),
        ("lone surrogate msg_id, wrong key", frames({"msg_id": "\ud800"}, k=b"w" * 32), None),
        ("lone surrogate msg_id, signed", frames({"msg_id": "\ud800"}), None),
        ("surrogates in a submit", frames({"msg_id": "s1", "msg_type": "submit"}, {
            "idempotency_key": "k", "job_id": "\ud800", "options": {"\ud800": "\udfff"},
            "image": {"media_type": "image/png", "name": "\ud800"}}, [b"not a png" * 4]), "s1"),
        ("timestamp 10**400", frames({"msg_id": "t1", "timestamp": 10 ** 400}), "t1"),
        ("heartbeat_s 10**400", frames({"msg_id": "h1", "msg_type": "hello"},
                                       {"heartbeat_s": 10 ** 400}), "h1"),
        ("version '１.１'", frames({"msg_id": "v1", "version": "１.１"}), "v1"),
        ("rig number 10**400", frames({"msg_id": "r1", "msg_type": "submit"}, {
            "idempotency_key": "k2", "image": {"media_type": "image/png"},
            "rig": {"cameras": [{"name": "c", "cam_to_world": [[10 ** 400] * 4] * 4,
                                 "intrinsics": {"width": 8, "height": 8, "fx": 1, "fy": 1,
                                                "cx": 4, "cy": 4}}]}}, [photo(1)]), "r1"),
    ]


def _answers(sock, codec, n_expected_ids: set, pending_none: int, timeout_s: float = 20.0):
    """Collect the direct replies: by parent_id (valid ids) and errors with parent_id null."""
    answered, nulls, codes, bad = set(), 0, {}, 0
    end = time.monotonic() + timeout_s
    while (not n_expected_ids <= answered or nulls < pending_none) and time.monotonic() < end:
        if not sock.poll(200):
            continue
        try:
            m = codec.decode(sock.recv_multipart(copy=False))
            messages.validate(m, "to_client")
        except Exception:
            bad += 1
            continue
        if m.msg_type == "ping":
            sock.send_multipart(codec.encode(messages.Message("pong", {})))
            continue
        if m.parent_id in n_expected_ids and m.parent_id not in answered:
            answered.add(m.parent_id)
            codes[m.content.get("code", m.msg_type)] = codes.get(m.content.get("code", m.msg_type), 0) + 1
        elif m.parent_id is None and m.msg_type == "error":
            nulls += 1
            codes[m.content["code"]] = codes.get(m.content["code"], 0) + 1
    return answered, nulls, codes, bad


def scenario_crash(tmp: Path, n: int = 10_000) -> None:
    print(f"[crash] issue 19's exact messages, then {n} hostile envelopes (nasty values in every "
          "header and content field; signed, unsigned, wrong key)")
    key_file = tmp / "crash.key"
    key = generate_key_file(key_file)
    codec = Codec(Signer(key), Limits.for_client())
    rng = random.Random(19)
    with HarnessProcess(key_file=key_file, state_dir=tmp / "crash-state", result_mb=0.01,
                        events=1, step_s=0.0) as hp:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(hp.endpoint)
        sock.send_multipart(codec.encode(messages.ping()))
        sock.poll(5000) and sock.recv_multipart()
        rss0 = rss_mb(hp.pid)
        exact_ok = []
        for name, frames, mid in _exact_issue_messages(key):
            sock.send_multipart(frames)
            got, nulls, codes, bad = _answers(sock, codec, {mid} if mid else set(), 0 if mid else 1, 5)
            ok = (bool(got) if mid else nulls == 1) and "INTERNAL" not in codes and bad == 0 \
                and hp.proc.poll() is None
            exact_ok.append(ok)
            print(f"  {name:34s} -> {', '.join(codes) or 'no answer'}"
                  f"{'' if ok else '   FAILED'}")
        ids, nulls_expected = set(), 0
        t0 = time.perf_counter()
        for i in range(n):
            frames, mid = _hostile(rng, key)
            if mid in ids:
                continue                         # a nasty id drawn twice: one reply to count
            sock.send_multipart(frames)
            if mid:
                ids.add(mid)
            else:
                nulls_expected += 1
        answered, nulls, codes, bad = _answers(sock, codec, ids, nulls_expected, 60)
        wall = time.perf_counter() - t0
        time.sleep(0.5)
        rss1 = rss_mb(hp.pid)
        ping = messages.ping()
        sock.send_multipart(codec.encode(ping))
        got, *_ = _answers(sock, codec, {ping.msg_id}, 0, 5)
        alive = hp.proc.poll() is None and ping.msg_id in got
        log = "".join(hp.log)
        sock.close(0)
    internal = codes.get("INTERNAL", 0)
    print(f"  {len(ids) + nulls_expected} hostile envelopes in {wall:.1f} s: answered {len(answered)}/{len(ids)} by "
          f"parent_id, {nulls}/{nulls_expected} with parent_id null; replies that failed to "
          f"decode {bad}; INTERNAL {internal}")
    print(f"  reply codes {dict(sorted(codes.items()))}")
    print(f"  server RSS {rss0:.1f} -> {rss1:.1f} MB; alive and answering {alive}; "
          f"tracebacks in its log {log.count('Traceback')}")
    report("crash", all(exact_ok) and alive and len(answered) == len(ids)
           and nulls >= nulls_expected and bad == 0 and internal == 0 and rss1 - rss0 < 50)


def scenario_lockout(tmp: Path, cap: int = 2000, flood: int = 20_000) -> None:
    print(f"[lockout] replay cache of {cap}: one client sends {flood} pings dated +290 s (and "
          "one first, alone); another client's job and pings must never be refused")
    key_file = tmp / "lock.key"
    key = generate_key_file(key_file)
    with HarnessProcess(key_file=key_file, state_dir=tmp / "lock-state", result_mb=1.0,
                        events=20, step_s=0.02, extra=["--replay-cache", str(cap)]) as hp:
        ahead = Codec(Signer(key), Limits.for_client(), clock=lambda: time.time() + 290)
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(hp.endpoint)
        refused = {"flooder": 0, "other": 0}
        other_ok = 0
        with Client(hp.endpoint, key=key, config=ClientConfig(heartbeat_s=0.2)) as other:
            other.wait_connected(10)
            sock.send_multipart(ahead.encode(messages.ping(session="flooder")))   # the one
            t0 = time.perf_counter()
            for i in range(flood):
                sock.send_multipart(ahead.encode(messages.ping(session=f"flooder")))
                while sock.poll(0):
                    f = sock.recv_multipart()
                    if json.loads(f[3]).get("code") == "AUTH":
                        refused["flooder"] += 1
                if i % 500 == 0:
                    for ev in other.poll(0):
                        if ev.kind == "error" and ev.data.get("code") == "AUTH":
                            refused["other"] += 1
            flood_s = time.perf_counter() - t0
            for j in range(5):                        # jobs and pings while the cache is full
                r = other.run_job(photo(300 + j), deadline_s=30)
                other_ok += r.glb == expected_result(photo(300 + j), 1 << 20)
                st = other.status(r.job_id)
                other_ok += st["state"] == "done"
            for ev in other.poll(0.5):
                if ev.kind == "error" and ev.data.get("code") == "AUTH":
                    refused["other"] += 1
        while sock.poll(200):
            f = sock.recv_multipart()
            if json.loads(f[3]).get("code") == "AUTH":
                refused["flooder"] += 1
        sock.close(0)
        rss = rss_mb(hp.pid)
    print(f"  flood of {flood} future-dated pings in {flood_s:.1f} s; refused: the flooder's "
          f"{refused['flooder']}, the other client's {refused['other']}; the other client's "
          f"5 jobs + status during it: {other_ok}/10 ok; server RSS {rss:.0f} MB")
    report("lockout", refused["other"] == 0 and other_ok == 10)


def scenario_proxy(tmp: Path, n_clients: int = 4, jobs_each: int = 5) -> None:
    import threading

    print(f"[proxy] {n_clients} clients x {jobs_each} jobs through zmq.proxy(ROUTER, DEALER)")
    key_file = tmp / "proxy.key"
    key = generate_key_file(key_file)
    with HarnessProcess(key_file=key_file, state_dir=tmp / "proxy-state", result_mb=4.0,
                        events=10, step_s=0.01) as hp:
        ctx = zmq.Context()
        front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        port = front.bind_to_random_port("tcp://127.0.0.1")
        back.connect(hp.endpoint)
        ctl = ctx.socket(zmq.PAIR)
        ctl.bind("inproc://proxy-ctl")
        th = threading.Thread(target=zmq.proxy_steerable, args=(front, back, None, ctl), daemon=True)
        th.start()
        endpoint = f"tcp://127.0.0.1:{port}"
        ok = 0
        t0 = time.perf_counter()
        clients = [Client(endpoint, key=key) for _ in range(n_clients)]
        handles = [(c, c.submit(photo(400 + 10 * i + j)), photo(400 + 10 * i + j))
                   for i, c in enumerate(clients) for j in range(jobs_each)]
        end = time.monotonic() + 120
        while not all(h.done for _, h, _ in handles) and time.monotonic() < end:
            for c in clients:
                c.poll(0.02)
        ok = sum(h.state == "done" and h.glb == expected_result(img, 4 << 20) for _, h, img in handles)
        wall = time.perf_counter() - t0
        for c in clients:
            c.close()
        raw = RawClient(endpoint, None)                      # an error reply through the proxy
        raw.send(messages.ping())
        err = raw.recv(5.0)
        raw.close()
        stop = ctx.socket(zmq.PAIR)
        stop.connect("inproc://proxy-ctl")
        stop.send(b"TERMINATE")
        th.join(5)
        for s_ in (front, back, ctl, stop):
            s_.close(0)
        ctx.term()
    err_ok = err is not None and err.content.get("code") == "AUTH"
    print(f"  {ok}/{len(handles)} jobs done with the right bytes in {wall:.1f} s; an unsigned "
          f"ping through the proxy got {err.content.get('code') if err else 'no answer'}")
    report("proxy", ok == len(handles) and err_ok)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=("kill", "fuzz", "auth", "oversize", "bomb", "cancel",
                                        "crash", "lockout", "proxy", "all"))
    p.add_argument("--fuzz-n", type=int, default=10_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("kill", "fuzz", "auth", "oversize", "bomb", "cancel", "crash", "lockout",
                     "proxy"):
            if args.scenario in (name, "all"):
                if name == "fuzz":
                    scenario_fuzz(tmp, args.fuzz_n)
                else:
                    globals()[f"scenario_{name}"](tmp)
    print("summary:", ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in RESULTS.items()))
    return 0 if all(RESULTS.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
