"""Signatures cover JSON and binary frames; wrong key, unsigned, tampered, replayed and stale
messages are all rejected; key files need owner-only permissions."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from gen3dface.protocol import messages as M
from gen3dface.protocol.envelope import Codec, Message
from gen3dface.protocol.errors import AuthError, ProtocolError
from gen3dface.protocol.signing import (MAGIC, ReplayGuard, Signer, generate_key_file,
                                        load_key, signing_input)

KEY = b"0123456789abcdef0123456789abcdef"
SPEC = Path(__file__).resolve().parents[1] / "protocol" / "SPEC.md"


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def result_msg():
    glb = b"glTF" + bytes(range(256)) * 40
    return Message("result", {"job_id": "j1", "sidecar": {"generator": "offline"},
                              "sha256": hashlib.sha256(glb).hexdigest()}, [glb])


def test_signature_is_hmac_over_frames_and_buffer_digests():
    frames = Codec(Signer(KEY)).encode(result_msg())
    header, content, glb = frames[2], frames[3], frames[4]
    s = (MAGIC + len(header).to_bytes(8, "big") + header + len(content).to_bytes(8, "big")
         + content + (1).to_bytes(4, "big") + hashlib.sha256(glb).digest())
    assert frames[1] == hmac.new(KEY, s, hashlib.sha256).hexdigest().encode()


def test_good_message_passes():
    frames = Codec(Signer(KEY)).encode(result_msg())
    assert Codec(Signer(KEY)).decode(frames).msg_type == "result"


@pytest.mark.parametrize("frame", [2, 3, 4])
def test_tampered_frame_rejected(frame):
    frames = Codec(Signer(KEY)).encode(result_msg())
    b = bytearray(frames[frame])
    b[len(b) // 2] ^= 0x01                          # one bit of the JSON or of the GLB
    frames[frame] = bytes(b)
    with pytest.raises(AuthError, match="bad signature"):
        Codec(Signer(KEY)).decode(frames)


def test_added_removed_or_reordered_buffers_rejected():
    msg = Message("preview", {"job_id": "j", "name": "n"}, [b"one", b"two"])
    frames = Codec(Signer(KEY)).encode(msg)
    for bad in (frames[:-1], frames + [b"three"], frames[:4] + [frames[5], frames[4]]):
        with pytest.raises(AuthError):
            Codec(Signer(KEY)).decode(bad)


def test_wrong_key_rejected():
    frames = Codec(Signer(b"x" * 32)).encode(result_msg())
    with pytest.raises(AuthError, match="different key"):
        Codec(Signer(KEY)).decode(frames)


def test_unsigned_rejected_and_garbage_signature_rejected():
    frames = Codec(Signer(None)).encode(result_msg())
    assert frames[1] == b""
    with pytest.raises(AuthError, match="unsigned"):
        Codec(Signer(KEY)).decode(frames)
    frames[1] = b"abc"
    with pytest.raises(AuthError, match="64 hex"):
        Codec(Signer(KEY)).decode(frames)
    frames[1] = b"0" * 64
    with pytest.raises(AuthError):
        Codec(Signer(KEY)).decode(frames)


def test_auth_errors_still_name_the_parent_message():
    msg = M.ping()
    frames = Codec(Signer(b"y" * 32)).encode(msg)
    with pytest.raises(AuthError) as e:
        Codec(Signer(KEY)).decode([b"peer"] + frames, router=True)
    assert e.value.header["msg_id"] == msg.msg_id and e.value.routing == [b"peer"]


def test_replayed_message_rejected():
    tx, rx = Codec(Signer(KEY)), Codec(Signer(KEY))
    frames = tx.encode(result_msg())
    rx.decode(frames)
    with pytest.raises(AuthError, match="replayed"):
        rx.decode(frames)
    # re-encoding the same Message gives a fresh nonce: accepted
    assert rx.decode(tx.encode(result_msg())).msg_type == "result"


@pytest.mark.parametrize("skew", [-301.0, 301.0, -1e6])
def test_stale_or_future_timestamp_rejected(skew):
    clock = Clock()
    tx = Codec(Signer(KEY), clock=Clock(clock.t + skew))
    rx = Codec(Signer(KEY), clock=clock, replay=ReplayGuard(300.0, clock=clock))
    with pytest.raises(AuthError, match="timestamp"):
        rx.decode(tx.encode(M.ping()))
    ok = Codec(Signer(KEY), clock=Clock(clock.t + (299.0 if skew > 0 else -299.0)))
    assert rx.decode(ok.encode(M.ping())).msg_type == "ping"


def test_replay_guard_bounded_memory_never_forgets_into_a_replay():
    clock = Clock()
    g = ReplayGuard(window_s=300.0, max_nonces=3, clock=clock)
    for i in range(3):
        g.check(clock.t - 10 + i, f"n{i}")
    g.check(clock.t, "n3")                      # evicts n0 (ts t-10): floor = t-10
    assert len(g) == 3
    with pytest.raises(AuthError, match="too old"):
        g.check(clock.t - 10, "n0")             # would be a replay of the forgotten nonce
    with pytest.raises(AuthError, match="replayed"):
        g.check(clock.t - 8, "n2")
    g.check(clock.t - 5, "fresh")
    clock.t += 1000                              # everything expires
    g.check(clock.t, "later")
    assert len(g) == 1


def test_insecure_receiver_accepts_but_keyed_receiver_refuses_unsigned():
    signed = Codec(Signer(KEY)).encode(result_msg())
    assert Codec(Signer(None)).decode(signed).msg_type == "result"


def test_signer_refuses_short_keys():
    with pytest.raises(ValueError):
        Signer(b"short")


def test_spec_worked_example_matches_the_code():
    spec = SPEC.read_text()
    example = spec[spec.index("### Worked example"):spec.index("## 5. Messages")]
    header = re.search(r"frame 2 \(header, (\d+) bytes\):\n(.*)\n", example)
    content = re.search(r"frame 3 \(content, (\d+) bytes\):\n(.*)\n", example)
    h, c = header.group(2).encode(), content.group(2).encode()
    assert len(h) == int(header.group(1)) and len(c) == int(content.group(1))
    digest = hashlib.sha256(b"hello").hexdigest()
    assert digest in example
    s_hex = re.search(r"S \(\d+ bytes, hex\):\n```\n(.*?)```", example, re.S).group(1)
    assert bytes.fromhex("".join(s_hex.split())) == signing_input(h, c, [bytes.fromhex(digest)])
    sig = re.search(r"Signature frame: `([0-9a-f]{64})`", example).group(1)
    assert Signer(KEY).sign(h, c, [bytes.fromhex(digest)]).decode() == sig
    # and it really is the key quoted in the text
    assert f"`{KEY.decode()}`" in example
    # the example header is a valid header for a receiver whose clock matches
    clock = Clock(json.loads(h)["timestamp"])
    msg = Codec(Signer(KEY), clock=clock).decode([MAGIC, sig.encode(), h, c, b"hello"])
    assert M.validate(msg, "to_client")["name"] == "face"


# ---- key files -------------------------------------------------------------------------------

@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_generate_and_load_key_file(tmp_path):
    p = tmp_path / "key"
    key = generate_key_file(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert len(key) == 64 and load_key(p) == key
    with pytest.raises(ProtocolError, match="already exists"):
        generate_key_file(p)
    assert generate_key_file(p, overwrite=True) != key


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_group_or_world_accessible_key_file_refused(tmp_path, mode):
    p = tmp_path / "key"
    generate_key_file(p)
    os.chmod(p, mode)
    with pytest.raises(ProtocolError, match="chmod 600") as e:
        load_key(p)
    assert e.value.code == "AUTH"


def test_missing_short_or_odd_key_files(tmp_path):
    with pytest.raises(ProtocolError, match="does not exist"):
        load_key(tmp_path / "nope")
    p = tmp_path / "short"
    p.write_bytes(b"abc\n")
    os.chmod(p, 0o600)
    with pytest.raises(ProtocolError, match="at least 32"):
        load_key(p)
    with pytest.raises(ProtocolError, match="not a regular file"):
        load_key(tmp_path)


def test_a_flooding_sender_only_ever_refuses_its_own_old_messages():
    """Issue 19, fault 2: one sender filling the cache with future-dated messages must not
    lock out another sender's fresh ones; its own evicted ones stay refused (no replay)."""
    clock = Clock()
    g = ReplayGuard(window_s=300.0, max_nonces=100, clock=clock)
    refused = 0
    for i in range(1000):                                   # the flooder: ~+299 s, 10x the cap
        try:
            g.check(clock.t + 299.0 - (i % 7) * 1e-3, f"f{i}", sender="flooder")
        except AuthError:
            refused += 1                                    # its own, dated below its floor
    assert len(g) <= 100 and 0 < refused < 1000
    for i in range(200):                                    # another client: never refused
        clock.t += 0.5
        g.check(clock.t, f"h{i}", sender="honest")
    assert len(g) <= 100 and g.senders()["honest"] >= 50    # it keeps its share
    with pytest.raises(AuthError, match="too old|replay"):
        g.check(clock.t - 100 + 299.0 - 6e-3, "f993", sender="flooder")   # evicted: floor
    with pytest.raises(AuthError, match="replay"):
        g.check(clock.t, "h199", sender="other")             # a nonce is global


def test_senders_beyond_the_table_share_an_overflow_account():
    clock = Clock()
    g = ReplayGuard(window_s=300.0, max_nonces=10, max_senders=2, clock=clock)
    g.check(clock.t, "a", sender="A")
    g.check(clock.t, "b", sender="B")
    for i in range(30):                                     # C.. Z: the overflow account
        g.check(clock.t + 200 + i, f"x{i}", sender=f"S{i}")
    assert set(g.senders()) == {"A", "B", ReplayGuard.OVERFLOW} and len(g) <= 10
    g.check(clock.t + 1, "a2", sender="A")                 # A and B are not affected
    clock.t += 301                                          # A and B expire; a new sender
    g.check(clock.t, "new", sender="N")                     # starts at the overflow floor:
    with pytest.raises(AuthError, match="too old"):
        g.check(clock.t + 200 + 5 - 301, "x-late", sender="N2")   # (window: t-301+200+5 ok)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(
    st.sampled_from(["honest", "flood", "replay", "tick"]),
    st.floats(-300.0, 300.0), st.integers(0, 7), st.integers(0, 40)), max_size=120),
    cap=st.integers(2, 30))
def test_replay_guard_properties(steps, cap):
    """Whatever a flooder sends (any timestamp in the window, any of 8 sender names, replays of
    anything seen): the cache never holds more than `cap` entries, never accepts the same
    message twice while its timestamp is inside the window, and never refuses a fresh message
    of the honest sender (its own session, strictly increasing timestamps)."""
    clock = Clock()
    g = ReplayGuard(window_s=300.0, max_nonces=cap, clock=clock)
    sent: list[tuple[float, str, str]] = []
    accepted: set[tuple[float, str, str]] = set()
    honest_t = 0.0
    for i, (kind, offset, who, pick) in enumerate(steps):
        if kind == "tick":
            clock.t += abs(offset) / 10
            continue
        if kind == "honest":
            honest_t = max(honest_t + 1e-3, clock.t)
            m = (honest_t, f"h{i}", "honest")
        elif kind == "flood":
            m = (clock.t + offset, f"f{i}", f"flooder{who}")
        else:
            if not sent:
                continue
            m = sent[pick % len(sent)]
        sent.append(m)
        try:
            g.check(*m)
        except AuthError:
            assert m[2] != "honest" or m in accepted, "a fresh honest message was refused"
        else:
            inside = abs(m[0] - clock.t) <= 300.0
            assert not (m in accepted and inside), f"replay accepted: {m}"
            accepted.add(m)
        assert len(g) <= cap
