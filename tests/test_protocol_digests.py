"""Negotiated buffer digests (protocol 1.4, SPEC section 4): BLAKE3 instead of SHA-256 for the
binary frames a signature covers, when both sides have the blake3 package.

Written against SPEC.md: the signature with a BLAKE3 header is recomputed here with hmac and
blake3 directly; the receiver refuses a digest it does not know; the header (which names the
digest) is signed, so changing the name breaks the signature; the server and the client each
use BLAKE3 only when the other offered it, and a peer that offers nothing (1.0-1.3) gets
SHA-256 exactly as before.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import struct

import blake3
import numpy as np
import pytest

from gen3dface.backend.images import encode_png
from gen3dface.backend.service import jobs as jobs_mod
from gen3dface.backend.service.harness import (RawClient, ServerThread, SyntheticWorkload,
                                               expected_result)
from gen3dface.protocol import messages as M
from gen3dface.protocol import signing
from gen3dface.protocol.client import Client, ClientConfig
from gen3dface.protocol.envelope import Codec, Message
from gen3dface.protocol.errors import AuthError, ProtocolError
from gen3dface.protocol.signing import (BLAKE3, MAGIC, SHA256, Signer, buffer_digest,
                                        choose_digest, supported_digests)

KEY = b"digest-test-key-0123456789abcdef0123"
SIZE = 3 << 20 | 12345          # a GLB over one 2 MiB part, not a multiple of it
PART = 1 << 20


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_png(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))


def codecs(key=KEY):
    return Codec(Signer(key)), Codec(Signer(key))


# ---- the digest functions ------------------------------------------------------------------

def test_blake3_is_offered_first_and_computes_the_standard_blake3():
    assert supported_digests() == (BLAKE3, SHA256)       # blake3 is a dependency
    # the BLAKE3 of the empty input (the reference implementation's test vector)
    assert buffer_digest(b"", BLAKE3).hex() == \
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    data = np.random.default_rng(1).integers(0, 255, 9 << 20, dtype=np.uint8).tobytes()
    # small and large (hashed on every core) buffers give the one BLAKE3 digest
    for buf in (data[:1000], data, memoryview(data)[5:]):
        assert buffer_digest(buf, BLAKE3) == blake3.blake3(bytes(buf)).digest()
        assert buffer_digest(buf) == hashlib.sha256(buf).digest()
    with pytest.raises(ValueError, match="not supported"):
        buffer_digest(b"x", "md5")


def test_choose_digest_takes_the_peers_first_known_name():
    assert choose_digest(["blake3", "sha256"]) == BLAKE3
    assert choose_digest(["sha256", "blake3"]) == SHA256          # the peer's order rules
    assert choose_digest(["k12", "blake3"]) == BLAKE3             # unknown names are skipped
    for offered in (None, [], ["md5"], "blake3", [3, None], {"blake3": 1}):
        assert choose_digest(offered) == SHA256                   # a 1.0-1.3 peer
    assert choose_digest(["blake3"], supported=(SHA256,)) == SHA256


# ---- the envelope --------------------------------------------------------------------------

def test_a_blake3_message_is_signed_as_spec_section_4_says():
    tx, rx = codecs()
    glb = b"glTF" + bytes(range(256)) * 40
    frames = tx.encode(Message("result", {"job_id": "j1", "sha256": "0" * 64}, [glb],
                               digest=BLAKE3))
    magic, sig, header, content, buf = frames
    assert json.loads(header)["digest"] == "blake3"
    s = (MAGIC + struct.pack(">Q", len(header)) + header + struct.pack(">Q", len(content))
         + content + struct.pack(">I", 1) + blake3.blake3(glb).digest())
    assert sig == hmac.new(KEY, s, hashlib.sha256).hexdigest().encode()
    msg = rx.decode(frames)
    assert msg.digest == BLAKE3 and msg.digests == [blake3.blake3(glb).digest()]
    assert bytes(msg.buffers[0]) == glb and "digest" not in msg.extra_header


def test_sha256_messages_carry_no_digest_field_as_before_1_4():
    tx, rx = codecs()
    for m in (Message("result", {"job_id": "j"}, [b"abc"]),          # SHA-256 is the default
              Message("ping", {}, digest=BLAKE3)):                    # no buffers: no digest
        header = json.loads(tx.encode(m)[2])
        assert "digest" not in header
    assert rx.decode(tx.encode(Message("result", {"job_id": "j"}, [b"abc"]))).digest == SHA256


def test_changing_a_byte_or_the_digests_name_fails_the_signature():
    tx, rx = codecs()
    frames = tx.encode(Message("preview", {"job_id": "j", "name": "n"}, [b"\x89PNG" * 100],
                               digest=BLAKE3))
    bad = list(frames)
    bad[4] = b"\x89PNG" * 99 + b"\x89PNH"
    with pytest.raises(AuthError):
        rx.decode(bad)
    # the name is in the signed header: saying sha256 instead breaks the signature
    bad = list(frames)
    bad[2] = frames[2].replace(b'"digest":"blake3"', b'"digest":"sha256"')
    assert bad[2] != frames[2]
    with pytest.raises(AuthError):
        rx.decode(bad)


@pytest.mark.parametrize("name", ["md5", "", "BLAKE3", 7, None, ["blake3"]])
@pytest.mark.parametrize("keyed", [True, False])
def test_a_digest_this_side_does_not_know_is_bad_request_with_the_msg_id(name, keyed):
    key = KEY if keyed else None
    header = {"protocol": "gen3dface", "version": "1.4", "msg_id": "m-1", "msg_type": "preview",
              "parent_id": None, "session": None, "timestamp": __import__("time").time(),
              "nonce": "n" * 32, "digest": name}
    h = json.dumps(header).encode()
    c = json.dumps({"job_id": "j", "name": "n"}).encode()
    sig = Signer(key).sign(h, c, [hashlib.sha256(b"x").digest()])
    with pytest.raises(ProtocolError) as e:
        Codec(Signer(key)).decode([MAGIC, sig, h, c, b"x"])
    assert e.value.code == "BAD_REQUEST" and "digest" in e.value.message
    assert M.reply_parent(e.value.header) == "m-1"


def test_a_side_without_blake3_refuses_it_and_offers_only_sha256(monkeypatch):
    tx = Codec(Signer(KEY))
    frames = tx.encode(Message("preview", {"job_id": "j", "name": "n"}, [b"png"], digest=BLAKE3))
    monkeypatch.setattr(signing, "_DIGESTS", {SHA256: signing._sha256})   # an install without it
    assert supported_digests() == (SHA256,)
    with pytest.raises(ProtocolError, match="not supported here; this side computes sha256"):
        Codec(Signer(KEY)).decode(frames)
    assert choose_digest(["blake3", "sha256"]) == SHA256
    c = Client("tcp://127.0.0.1:9", key=KEY, config=ClientConfig(digests=("blake3", "sha256")))
    try:
        assert c._offered_digests() == (SHA256,)      # never offers what it cannot compute
    finally:
        c.close()


# ---- the service ---------------------------------------------------------------------------

@pytest.fixture
def server():
    w = SyntheticWorkload(steps=2, step_s=0.001, result_bytes=SIZE)
    with ServerThread(w, key=KEY, heartbeat_s=0.5, client_timeout_s=5, result_part_bytes=PART,
                      result_parts_min_bytes=0) as st:
        seen = []                     # the digest of every message with buffers it decoded
        real = st.server.codec.decode

        def decode(frames, *a, **k):
            msg = real(frames, *a, **k)
            if msg.buffers:
                seen.append((msg.msg_type, msg.digest))
            return msg
        st.server.codec.decode = decode
        st.seen = seen
        yield st


def _digests_sent(client: Client) -> list:
    """Wraps the client's codec: the (msg_type, digest) of each message with buffers it
    receives."""
    got = []
    real = client._codec.decode

    def decode(frames, *a, **k):
        msg = real(frames, *a, **k)
        if msg.buffers:
            got.append((msg.msg_type, msg.digest))
        return msg
    client._codec.decode = decode
    return got


@pytest.mark.parametrize("parts", [True, False])
def test_a_1_4_client_and_server_use_blake3_both_ways(server, parts):
    image = photo(1)
    with Client(server.endpoint, key=KEY, config=ClientConfig(result_parts=parts)) as client:
        got = _digests_sent(client)
        client.wait_connected(10)
        assert client.capabilities["digests"] == ["blake3", "sha256"]
        r = client.run_job(image, deadline_s=30)
        assert bytes(r.glb) == expected_result(image, SIZE)
        h = client.fetch_result(r.job_id)                  # a kept result, signed from its
        while not h.done:                                  # kept BLAKE3 digests
            client.poll(0.05)
        assert h.state == "done" and bytes(h.glb) == bytes(r.glb)
    assert ("submit", BLAKE3) in server.seen               # the photo
    kinds = {t for t, _ in got}
    assert kinds == ({"result_part"} if parts else {"result"}) | ({"preview"} & kinds)
    assert {d for _, d in got} == {BLAKE3}


def test_a_client_that_offers_only_sha256_gets_sha256(server):
    image = photo(2)
    with Client(server.endpoint, key=KEY, config=ClientConfig(digests=("sha256",))) as client:
        got = _digests_sent(client)
        r = client.run_job(image, deadline_s=30)
        assert bytes(r.glb) == expected_result(image, SIZE)
    assert got and {d for _, d in got} == {SHA256}
    assert server.seen == [("submit", SHA256)]


def test_a_spec_client_that_offers_nothing_is_answered_exactly_as_by_1_3(server):
    """A raw client (pyzmq + hmac, no `digests` in its hello, SHA-256 everywhere)."""
    c = RawClient(server.endpoint, KEY)
    try:
        c.send(M.hello("spec-client", 0.5, "spec-session", result_parts=True))
        caps = c.recv(5.0)
        assert caps.msg_type == "capabilities" and "blake3" in caps.content["digests"]
        image = photo(3)
        c.send(Message("submit", {"idempotency_key": "k3", "options": {},
                                  "image": {"media_type": "image/png"}}, [image],
                       session="spec-session"))
        pieces, total = [], None
        while total is None or len(pieces) < total:
            m = c.recv(10.0)
            assert m is not None
            if m.msg_type == "result":
                total = m.content["parts"]
            elif m.msg_type == "result_part":
                pieces.append(bytes(m.buffers[0]))
            if m.buffers:          # every buffer the server sent it: SHA-256, no digest field
                assert m.digest == SHA256 and "digest" not in m.extra_header
        assert b"".join(pieces) == expected_result(image, SIZE)
    finally:
        c.close()


def test_digests_of_a_result_kept_by_a_1_3_server_are_made_once_and_kept(tmp_path):
    glb = bytes(range(256)) * (SIZE // 256)
    job = jobs_mod.Job("0" * 32, None, "d", result_sha256=hashlib.sha256(glb).hexdigest())
    whole, changed = jobs_mod.result_digests(job, glb, BLAKE3, None)
    assert changed and whole == [blake3.blake3(glb).digest()]
    parts, changed = jobs_mod.result_digests(job, glb, BLAKE3, PART)
    assert changed and len(parts) == 4
    assert parts[1] == blake3.blake3(glb[PART:2 * PART]).digest()
    assert job.result_part_sha256[3] == hashlib.sha256(glb[3 * PART:]).hexdigest()
    again, changed = jobs_mod.result_digests(job, glb, BLAKE3, PART)
    assert not changed and again == parts
    sha, changed = jobs_mod.result_digests(job, glb, SHA256, None)
    assert not changed and sha == [hashlib.sha256(glb).digest()]
    # kept through a restart: the job record carries them
    back = jobs_mod.Job.from_record(json.loads(json.dumps(job.record())))
    assert jobs_mod.result_digests(back, glb, BLAKE3, PART) == (parts, False)
    # another part size: both algorithms' pieces are made again
    other, changed = jobs_mod.result_digests(back, glb, BLAKE3, 2 * PART)
    assert changed and len(other) == 2 and len(back.result_part_sha256) == 2


def test_spec_worked_blake3_example_matches_the_code():
    import re
    from pathlib import Path
    spec = (Path(__file__).resolve().parents[1] / "protocol" / "SPEC.md").read_text()
    example = spec[spec.index("The same message signed with BLAKE3"):spec.index("## 5. Messages")]
    h = re.search(r"frame 2,\s*(\d+) bytes:\s*`(\{.*?\})`", example, re.S)
    header = h.group(2).encode()
    assert len(header) == int(h.group(1)) and json.loads(header)["digest"] == "blake3"
    content = b'{"job_id":"j1","name":"face","media_type":"image/png"}'
    d = blake3.blake3(b"hello").hexdigest()
    assert f"`{d}`" in example
    key = b"0123456789abcdef0123456789abcdef"
    s = signing.signing_input(header, content, [bytes.fromhex(d)])
    assert f"S ({len(s)} bytes)" in example
    sig = Signer(key).sign(header, content, [bytes.fromhex(d)]).decode()
    assert f"`{sig}`" in example
    clock = lambda: json.loads(header)["timestamp"]   # noqa: E731  a receiver in step with it
    msg = Codec(Signer(key), clock=clock).decode([MAGIC, sig.encode(), header, content, b"hello"])
    assert msg.digest == BLAKE3 and M.validate(msg, "to_client")["name"] == "face"
