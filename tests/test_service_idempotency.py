"""Issue 19, fault 4: a reused idempotency key with another photo, rig or options gets its own
error code, IDEMPOTENCY_CONFLICT (SPEC 5.3), naming the job the key belongs to, and runs
nothing; the client library refuses such a reuse locally, and `gen3dface submit` exits 2
(usage: the --idempotency-key argument) with advice."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from gen3dface.backend.commands import submit as submit_cmd
from gen3dface.backend.images import encode_png
from gen3dface.backend.commands.cli_support import EXIT_USAGE, exit_code_for
from gen3dface.backend.service.harness import RawClient, ServerThread, SyntheticWorkload
from gen3dface.protocol import messages
from gen3dface.protocol.cameras import ring_rig
from gen3dface.protocol.client import Client, JobError
from gen3dface.protocol.errors import ERROR_CODES, ProtocolError

KEY = b"0123456789abcdef0123456789abcdef-idem"


def photo(seed: int = 0) -> bytes:
    return encode_png(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


@pytest.fixture
def server(tmp_path):
    w = SyntheticWorkload(steps=5, step_s=0.001, result_bytes=1000)
    with ServerThread(w, key=KEY, state_dir=tmp_path / "state") as st:
        yield st


def send(c, image, key, **kw):
    c.send(messages.submit(image, "image/png", key, **kw))
    return c.recv_until(("accepted", "error"))[-1]


@pytest.mark.parametrize("change", ["photo", "options", "rig"])
def test_reused_key_with_other_inputs_is_an_idempotency_conflict(server, change):
    c = RawClient(server.endpoint, KEY)
    try:
        first = send(c, photo(1), "k", options={"seed": 1}, rig=ring_rig(2).to_dict())
        job_id = first.content["job_id"]
        c.recv_until(("result",), job_id=job_id)
        other = {"photo": dict(image=photo(2), options={"seed": 1}, rig=ring_rig(2).to_dict()),
                 "options": dict(image=photo(1), options={"seed": 2}, rig=ring_rig(2).to_dict()),
                 "rig": dict(image=photo(1), options={"seed": 1}, rig=ring_rig(3).to_dict())}[change]
        image = other.pop("image")
        err = send(c, image, "k", **other)
        assert err.msg_type == "error" and err.content["code"] == "IDEMPOTENCY_CONFLICT"
        assert err.content["job_id"] is None            # not a job event: it ends no job
        assert err.content["details"] == {"idempotency_key": "k", "job_id": job_id}
        assert "different" in err.content["message"] and "new key" in err.content["message"]
        assert server.server.store.get(job_id).runs == 1 and server.server.counters["submitted"] == 1
        same = send(c, photo(1), "k", options={"seed": 1}, rig=ring_rig(2).to_dict())
        assert same.content["duplicate"] is True and same.content["job_id"] == job_id
    finally:
        c.close()


def test_conflict_also_after_a_restart_and_for_an_interrupted_job(tmp_path):
    w = SyntheticWorkload(steps=1000, step_s=0.01, result_bytes=1000)
    with ServerThread(w, key=KEY, state_dir=tmp_path / "s") as st:
        c = RawClient(st.endpoint, KEY)
        job_id = send(c, photo(1), "k-restart").content["job_id"]
        c.close()
    with ServerThread(w, key=KEY, state_dir=tmp_path / "s") as st:     # job is INTERRUPTED now
        c = RawClient(st.endpoint, KEY)
        err = send(c, photo(9), "k-restart")
        assert err.content["code"] == "IDEMPOTENCY_CONFLICT"
        assert err.content["details"]["job_id"] == job_id
        assert st.server.store.get(job_id).state.value == "interrupted"   # not rerun
        c.close()


def test_the_code_is_in_the_protocol_and_the_client_library_keeps_it(server):
    assert "IDEMPOTENCY_CONFLICT" in ERROR_CODES
    with Client(server.endpoint, key=KEY) as a:
        a.run_job(photo(1), idempotency_key="shared-key", deadline_s=30)
    with Client(server.endpoint, key=KEY) as b:                 # another client, same key
        with pytest.raises(JobError) as e:
            b.run_job(photo(2), idempotency_key="shared-key", deadline_s=30)
        assert e.value.code == "IDEMPOTENCY_CONFLICT"
        h = b.submit(photo(3), idempotency_key="local")          # and locally, before sending:
        with pytest.raises(ProtocolError) as e:
            b.submit(photo(4), idempotency_key="local")
        assert e.value.code == "IDEMPOTENCY_CONFLICT"
        assert b.submit(photo(3), idempotency_key="local") is h   # the same inputs: same handle


def test_submit_command_exits_2_with_advice(server, tmp_path, capsys):
    assert exit_code_for("IDEMPOTENCY_CONFLICT") == EXIT_USAGE
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    submit_cmd.add_parser(sub)
    for i, code in ((1, 0), (2, EXIT_USAGE)):
        img = tmp_path / f"face{i}.png"
        img.write_bytes(photo(i))
        args = p.parse_args(["submit", str(img), "-o", str(tmp_path / f"h{i}.glb"), "--server",
                             server.endpoint, "--key-file", str(key_file), "--idempotency-key",
                             "cli-key", "--timeout", "30"])
        assert args.func(args) == code
    err = capsys.readouterr().err
    assert "IDEMPOTENCY_CONFLICT" in err and "--idempotency-key" in err
