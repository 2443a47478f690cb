"""The envelope: framing, header checks, limits, message validators, and the import rules of
the protocol package (stdlib only, relative imports, no numpy/torch/bpy)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gen3dface.protocol import messages as M
from gen3dface.protocol.cameras import ring_rig
from gen3dface.protocol.envelope import (PROTOCOL_VERSION, Codec, Limits, Message, dumps,
                                         split_routing)
from gen3dface.protocol.errors import ERROR_CODES, ProtocolError
from gen3dface.protocol.signing import MAGIC, Signer

KEY = b"k" * 40
PROTOCOL_DIR = Path(__file__).resolve().parents[1] / "protocol"


def pair(limits=None):
    return Codec(Signer(KEY)), Codec(Signer(KEY), limits)


def test_round_trip_keeps_everything():
    tx, rx = pair()
    rig = ring_rig(3)
    msg = M.submit(b"\x89PNG fake", "image/png", "key-1", {"seed": 3}, rig, "me.png",
                   session="s1")
    msg.extra_header["x_future"] = 42
    frames = tx.encode(msg)
    assert frames[0] == MAGIC and len(frames[1]) == 64 and frames[4] == b"\x89PNG fake"
    got = rx.decode(frames)
    assert (got.msg_type, got.msg_id, got.parent_id, got.session) == \
        ("submit", msg.msg_id, None, "s1")
    assert got.content == json.loads(json.dumps(msg.content))
    assert got.buffers == [b"\x89PNG fake"]
    assert got.extra_header == {"x_future": 42}        # unknown header fields tolerated
    assert got.version == PROTOCOL_VERSION
    c = M.validate(got, "to_server")
    assert c["rig"] == rig.to_dict() and c["options"] == {"seed": 3}


def test_router_side_splits_routing_ids_and_replies_carry_them():
    tx, rx = pair()
    got = rx.decode([b"\x00peer"] + tx.encode(M.ping(1.0)), router=True)
    assert got.routing == [b"\x00peer"]
    reply = got.reply("pong", {})
    frames = rx.encode(reply)
    assert frames[0] == b"\x00peer" and frames[1] == MAGIC
    assert tx.decode(frames[1:]).parent_id == got.msg_id
    # no G3F1 frame: the first frame is still taken as the routing id for the error reply
    with pytest.raises(ProtocolError) as e:
        rx.decode([b"peer", b"junk", b"x", b"y", b"z"], router=True)
    assert e.value.code == "BAD_REQUEST" and e.value.routing == [b"peer"]
    assert split_routing([b"a", b"b", MAGIC, b"s"], True) == ([b"a", b"b"], [MAGIC, b"s"])


def test_content_and_header_are_json_objects_without_nan():
    with pytest.raises(ValueError):
        dumps({"x": float("nan")})
    tx, rx = Codec(Signer(None)), Codec(Signer(None))
    frames = tx.encode(M.ping())
    frames[3] = b'{"heartbeat_s": NaN}'
    with pytest.raises(ProtocolError, match="not valid JSON") as e:
        rx.decode(frames)
    assert e.value.header is not None           # so an error reply can name the parent
    frames[3] = b"[1, 2]"
    with pytest.raises(ProtocolError, match="must be an object"):
        rx.decode(frames)
    frames[3] = b"\xff\xfe"
    with pytest.raises(ProtocolError, match="UTF-8"):
        rx.decode(frames)
    frames[3] = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ProtocolError):
        rx.decode(frames)


@pytest.mark.parametrize("field,value,match", [
    ("version", "2.0", "UNSUPPORTED_VERSION"),
    ("version", "one", "version"),
    ("msg_id", "has space", "msg_id"),
    ("msg_id", 7, "msg_id"),
    ("msg_type", "", "msg_type"),
    ("timestamp", "yesterday", "timestamp"),
    ("parent_id", ["x"], "parent_id"),
    ("protocol", "jupyter", "protocol"),
])
def test_bad_header_fields(field, value, match):
    tx, rx = Codec(Signer(None)), Codec(Signer(None))
    frames = tx.encode(M.ping())
    h = json.loads(frames[2])
    h[field] = value
    frames[2] = dumps(h)
    with pytest.raises(ProtocolError, match=match):
        rx.decode(frames)


def test_other_framing_version_is_unsupported():
    tx, rx = pair()
    frames = tx.encode(M.ping())
    frames[0] = b"G3F2"
    with pytest.raises(ProtocolError) as e:
        rx.decode(frames)
    assert e.value.code == "UNSUPPORTED_VERSION"
    frames[0] = b"ZMQ?"
    with pytest.raises(ProtocolError) as e:
        rx.decode(frames)
    assert e.value.code == "BAD_REQUEST"


def test_limits_checked_before_parsing():
    lim = Limits(max_part_bytes=1000, max_parts=6, max_total_bytes=1500, max_header_bytes=400,
                 max_content_bytes=300)
    tx, rx = pair(lim)
    ok = tx.encode(Message("preview", {"job_id": "j", "name": "n"}, [b"x" * 900]))
    rx.decode(ok)
    cases = {
        "frame 4 is 1001 bytes": Message("preview", {}, [b"x" * 1001]),
        "7 frames": Message("preview", {}, [b"a", b"b", b"c"]),
        "the message is [0-9]+ bytes; at most 1500": Message("preview", {}, [b"x" * 800, b"y" * 800]),
        "content JSON": Message("preview", {"pad": "p" * 400}, []),
    }
    for match, msg in cases.items():
        with pytest.raises(ProtocolError, match=match) as e:
            rx.decode(tx.encode(msg))
        assert e.value.code == "TOO_LARGE"
    big_header = Message("ping", {})
    big_header.extra_header["pad"] = "p" * 500
    with pytest.raises(ProtocolError, match="header JSON") as e:
        rx.decode(tx.encode(big_header))
    with pytest.raises(ProtocolError, match="at least 4 frames") as e:
        rx.decode([MAGIC, b"", b"{}"])
    assert e.value.code == "BAD_REQUEST"


def test_oversized_frame_is_refused_without_hashing(monkeypatch):
    # The size check runs before any SHA-256: a signed-mode receiver never hashes a frame it
    # will refuse anyway.
    from gen3dface.protocol import envelope
    calls = []
    monkeypatch.setattr(envelope, "buffer_digest", lambda b: calls.append(1) or b"\0" * 32)
    tx, rx = pair(Limits(max_part_bytes=100))
    with pytest.raises(ProtocolError):
        rx.decode([MAGIC, b"0" * 64, b"{}", b"{}", b"x" * 101])
    assert calls == []


# ---- validators ------------------------------------------------------------------------------

def _decoded(msg):
    tx, rx = Codec(Signer(None)), Codec(Signer(None))
    return rx.decode(tx.encode(msg))


def test_unknown_type_and_wrong_direction_are_bad_requests():
    with pytest.raises(ProtocolError, match="unknown message type 'frobnicate'") as e:
        M.validate(_decoded(Message("frobnicate", {})), "to_server")
    assert e.value.code == "BAD_REQUEST" and e.value.header["msg_id"]
    with pytest.raises(ProtocolError, match="not sent to server"):
        M.validate(_decoded(Message("result", {"job_id": "j", "sidecar": {}}, [b"g"])),
                   "to_server")


@pytest.mark.parametrize("content,buffers,match", [
    ({"image": {"media_type": "image/png"}}, [b"x"], "idempotency_key: is required"),
    ({"idempotency_key": "a/../b", "image": {"media_type": "image/png"}}, [b"x"],
     "idempotency_key"),
    ({"idempotency_key": "k", "image": {"media_type": "image/gif"}}, [b"x"], "media_type"),
    ({"idempotency_key": "k", "image": {"media_type": "image/png"}}, [], "exactly 1"),
    ({"idempotency_key": "k", "image": {"media_type": "image/png"}}, [b""], "empty"),
    ({"idempotency_key": "k", "image": {"media_type": "image/png"}, "options": [1]}, [b"x"],
     "options: must be an object"),
    ({"idempotency_key": "k", "image": {"media_type": "image/png"},
      "rig": {"cameras": [{"cam_to_world": [[1, 2]], "intrinsics": {}}]}}, [b"x"], "submit.rig"),
    ({"idempotency_key": "k", "image": "photo.png"}, [b"x"], "image: must be an object"),
])
def test_submit_validation_messages(content, buffers, match):
    with pytest.raises(ProtocolError, match=match) as e:
        M.validate(_decoded(Message("submit", content, buffers)), "to_server")
    assert e.value.code == "BAD_REQUEST"


def test_rig_with_nan_is_refused():
    rig = ring_rig(2).to_dict()
    rig["cameras"][0]["intrinsics"]["fx"] = float("inf")
    # JSON cannot carry inf: a sender must not be able to produce it either
    with pytest.raises(ValueError):
        Codec(Signer(None)).encode(Message("submit", {"rig": rig}))
    msg = Message("submit", {"idempotency_key": "k", "image": {"media_type": "image/png"},
                             "rig": {"cameras": [{}] * 65}}, [b"x"])
    with pytest.raises(ProtocolError, match="at most 64 cameras"):
        M.validate(_decoded(msg), "to_server")


@pytest.mark.parametrize("msg_type,content,match", [
    ("progress", {"job_id": "j", "stage": "fit", "fraction": 1.5}, "fraction"),
    ("progress", {"job_id": "j", "stage": "fit", "fraction": True}, "fraction"),
    ("progress", {"job_id": "j", "fraction": 0.5}, "stage"),
    ("error", {"code": "NO_FACE"}, "message"),
    ("cancel", {}, "job_id"),
    ("accepted", {"job_id": "j", "state": "sleeping"}, "state"),
    ("ping", {"heartbeat_s": 0}, "heartbeat_s"),
])
def test_field_validation(msg_type, content, match):
    with pytest.raises(ProtocolError, match=f"{msg_type}.{match}"):
        M.validate(_decoded(Message(msg_type, content)))


def test_validators_fill_defaults_and_tolerate_unknown_fields():
    c = M.validate(_decoded(Message("progress", {"job_id": "j", "stage": "new-stage",
                                                 "fraction": 0.25, "future": [1]})))
    assert c == {"job_id": "j", "stage": "new-stage", "fraction": 0.25, "message": "",
                 "overall": None, "future": [1]}
    c = M.validate(_decoded(Message("status", {})), "to_server")
    assert c["job_id"] is None


def test_error_reply_builders():
    tx, rx = pair()
    got = rx.decode([b"id"] + tx.encode(M.ping()), router=True)
    err = M.error_reply(got, "QUEUE_FULL", "full", retry_after=2)
    assert err.parent_id == got.msg_id and err.routing == [b"id"]
    assert err.content == {"code": "QUEUE_FULL", "message": "full", "job_id": None,
                           "details": {"retry_after": 2}}
    assert M.error_reply(None, "SOMETHING_NEW", "x").content["code"] == "INTERNAL"
    try:
        M.validate(_decoded(Message("bogus", {})))
    except ProtocolError as e:
        reply = M.error_from_exception(e)
    assert reply.content["code"] == "BAD_REQUEST" and reply.parent_id
    assert M.validate(_decoded(reply), "to_client")["code"] == "BAD_REQUEST"


def test_every_error_code_is_in_the_spec():
    spec = (PROTOCOL_DIR / "SPEC.md").read_text()
    for code in ERROR_CODES:
        assert f"`{code}`" in spec, code
    for t in M.ALL_TYPES:
        assert f"`{t}`" in spec, t
    assert f"version {PROTOCOL_VERSION}" in spec.splitlines()[0]


# ---- import rules ----------------------------------------------------------------------------

ZMQ_MODULES = {"transport.py", "client.py", "curve.py"}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield 0, a.name
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""


def test_protocol_imports_only_stdlib_and_relative():
    stdlib = sys.stdlib_module_names
    for path in sorted(PROTOCOL_DIR.glob("*.py")):
        for level, name in _imports(path):
            if level > 0:
                continue    # relative: fine
            top = name.split(".")[0]
            if top == "zmq":
                assert path.name in ZMQ_MODULES, f"{path.name} imports pyzmq"
                continue
            if top == "blake3":     # optional (1.4 digest): imported under try/except
                assert path.name == "signing.py", f"{path.name} imports blake3"
                continue
            assert top in stdlib, f"{path.name} imports {name} (stdlib only, relative imports)"


def test_protocol_imports_with_numpy_torch_bpy_blocked(tmp_path):
    # Import every module as a bundled copy under another package name, with the heavy
    # packages made unimportable.
    import shutil
    shutil.copytree(PROTOCOL_DIR, tmp_path / "bundled_proto")
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('numpy', 'torch', 'bpy', 'PIL', 'gen3dface'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib, pkgutil, bundled_proto\n"
        "for m in pkgutil.iter_modules(bundled_proto.__path__):\n"
        "    importlib.import_module('bundled_proto.' + m.name)\n"
        "print('ok', sorted(k for k in sys.modules if k.startswith('bundled_proto.')))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "bundled_proto.client" in r.stdout and "bundled_proto.cameras" in r.stdout


def test_server_builders_validate_and_reuse_the_result_digest(monkeypatch):
    import hashlib
    glb = b"glTF" + b"\x01" * 1000
    msgs = [M.accepted("j1", "k", "queued", 0), M.progress("j1", "fit", 1.7, "m", 0.5),
            M.preview("j1", "crop", b"\x89PNG"), M.result("j1", glb, {"generator": "x"})]
    tx = Codec(Signer(KEY))
    for m in msgs:
        M.validate(pair()[1].decode(tx.encode(m)), "to_client")
    assert msgs[1].content["fraction"] == 1.0
    res = msgs[3]
    assert res.content["sha256"] == hashlib.sha256(glb).hexdigest()
    from gen3dface.protocol import envelope
    monkeypatch.setattr(envelope, "buffer_digest", lambda b: pytest.fail("hashed again"))
    frames = tx.encode(res)                 # digest reused: the GLB is not hashed on send
    monkeypatch.undo()
    assert pair()[1].decode(frames).digests[0] == hashlib.sha256(glb).digest()
