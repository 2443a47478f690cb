"""Fuzzing: whatever frames arrive, decoding + validation raise nothing but ProtocolError (and
rigs nothing but CameraError, the sniffer nothing but ProtocolError)."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen3dface.protocol import messages as M
from gen3dface.protocol.cameras import CameraError, Rig, ring_rig
from gen3dface.protocol.envelope import Codec, Limits, Message
from gen3dface.protocol.errors import ProtocolError
from gen3dface.protocol.images import sniff_image
from gen3dface.protocol.signing import MAGIC, Signer

KEY = b"f" * 32
LIMITS = Limits(max_part_bytes=4096, max_parts=8, max_total_bytes=8192,
                max_header_bytes=1024, max_content_bytes=2048)
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False,
                                                                      allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                     children, max_size=4),
    max_leaves=12)


def receive(codec: Codec, frames, router: bool):
    try:
        msg = codec.decode(frames, router=router)
        M.validate(msg, "to_server" if router else None)
    except ProtocolError as e:
        assert e.code in ("BAD_REQUEST", "TOO_LARGE", "AUTH", "UNSUPPORTED_VERSION"), e.code
        # whatever went wrong, the server can always build an error reply from it
        reply = M.error_from_exception(e)
        Codec(Signer(KEY)).encode(reply)


@FUZZ
@given(frames=st.lists(st.binary(max_size=300), max_size=10), router=st.booleans(),
       signed=st.booleans())
def test_random_frames(frames, router, signed):
    receive(Codec(Signer(KEY if signed else None), LIMITS), frames, router)


@FUZZ
@given(frames=st.lists(st.binary(max_size=64), min_size=2, max_size=8))
def test_random_frames_after_magic(frames):
    receive(Codec(Signer(None), LIMITS), [MAGIC] + frames, False)


def valid_frames(msg_type, content, buffers, codec):
    return codec.encode(Message(msg_type, content, buffers))


@settings(FUZZ, max_examples=60)
@given(msg_type=st.sampled_from(M.ALL_TYPES + ("nope", "")),
       content=st.dictionaries(st.sampled_from(
           ["job_id", "stage", "fraction", "code", "message", "idempotency_key", "image",
            "rig", "options", "name", "media_type", "sidecar", "state", "heartbeat_s",
            "queue_position", "other"]), json_values, max_size=8),
       n_buffers=st.integers(0, 3))
def test_structured_but_random_content(msg_type, content, n_buffers):
    """Well-formed envelopes with arbitrary field values: only BAD_REQUEST comes out."""
    tx = Codec(Signer(KEY))
    frames = valid_frames(msg_type, content, [b"b" * 10] * n_buffers, tx)
    receive(Codec(Signer(KEY), LIMITS), frames, False)


# Encoded once, so that every example starts from the same bytes (hypothesis replays examples).
_SUBMIT = M.submit(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png", "k1", {"seed": 1},
                   ring_rig(2))
BASE = {True: Codec(Signer(KEY)).encode(_SUBMIT), False: Codec(Signer(None)).encode(_SUBMIT)}


@FUZZ
@given(data=st.data(), signed=st.booleans())
def test_mutated_valid_messages(data, signed):
    key = KEY if signed else None
    frames = list(BASE[signed])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "drop", "dup", "swap", "json"]))
        i = data.draw(st.integers(0, len(frames) - 1)) if frames else 0
        if not frames:
            break
        if op == "flip" and frames[i]:
            b = bytearray(frames[i])
            j = data.draw(st.integers(0, len(b) - 1))
            b[j] = data.draw(st.integers(0, 255))
            frames[i] = bytes(b)
        elif op == "truncate":
            frames[i] = frames[i][: data.draw(st.integers(0, len(frames[i])))]
        elif op == "drop":
            del frames[i]
        elif op == "dup":
            frames.insert(i, frames[i])
        elif op == "swap" and len(frames) > 1:
            j = data.draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
        elif op == "json" and len(frames) > 3:
            frames[data.draw(st.sampled_from([2, 3]))] = json.dumps(
                data.draw(json_values)).encode()
    receive(Codec(Signer(key), LIMITS), frames, False)


@settings(max_examples=80, deadline=None)
@given(d=st.dictionaries(st.sampled_from(["cameras", "head_to_world", "convention", "units"]),
                         json_values, max_size=4))
def test_random_rigs_only_raise_camera_error(d):
    try:
        Rig.from_dict(d)
    except CameraError:
        pass


@settings(max_examples=80, deadline=None)
@given(cam=st.dictionaries(st.sampled_from(["name", "cam_to_world", "intrinsics"]),
                           json_values, max_size=3))
def test_random_cameras_only_raise_camera_error(cam):
    try:
        Rig.from_dict({"cameras": [cam]})
    except CameraError:
        pass


@settings(max_examples=150, deadline=None)
@given(prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\0\0\0\0WEBP",
                               b"RIFF\0\0\0\0WEBPVP8 ", b"RIFF\0\0\0\0WEBPVP8L",
                               b"RIFF\0\0\0\0WEBPVP8X"]),
       rest=st.binary(max_size=200))
def test_sniffer_only_raises_bad_image(prefix, rest):
    try:
        info = sniff_image(prefix + rest)
    except ProtocolError as e:
        assert e.code == "BAD_IMAGE"
    else:
        assert info.width >= 0 and info.height >= 0
