"""What the client accepts from a backend (protocol/limits.py, SPEC 11), and the client and
the add-on's network side against tests/fake_backend.py, a backend written from SPEC alone
that sends each bad result. Pure: no bpy, no torch."""
from __future__ import annotations

import os
import time

import pytest

from fake_backend import FakeBackend, png_bomb, png_bytes

from gen3dface.blender_addon.core import batch
from gen3dface.blender_addon.core import messages as addon_messages
from gen3dface.blender_addon.core.glb_check import GlbError, check_glb
from gen3dface.blender_addon.core.settings import ConnectionSettings
from gen3dface.blender_addon.core.worker import JobRequest, JobWorker, run_job
from gen3dface.protocol import limits
from gen3dface.protocol.client import Client, ClientConfig, JobError
from gen3dface.protocol.errors import ERROR_CODES

LIM = limits.ReceiveLimits()


# ---- the checks themselves -----------------------------------------------------------------

def test_preview_names_are_labels_not_paths():
    png = png_bytes(16, 16)
    for ok in ("landmarks", "fit", "surface_texture", "generated_views", "generate_step_001",
               "step0", "crop (front)", "views 1-4", "a.b"):
        limits.check_preview(ok, "image/png", png, LIM)
    for bad in ("../../escape", "/tmp/abs", "a/b", "a\\b", "C:x", ".hidden", "~root", "",
                "x\x00y", "line\nbreak", "crop\n", "é" * 3, "x" * 129, None, 7):
        with pytest.raises(limits.LimitError, match="preview named"):
            limits.check_preview(bad, "image/png", png, LIM)


def test_preview_bombs_sizes_and_formats():
    with pytest.raises(limits.LimitError, match="60000 x 60000"):
        limits.check_preview("crop", "image/png", png_bomb(), LIM)
    limits.check_preview("crop", "image/png", png_bomb(4096, 4096), LIM)
    with pytest.raises(limits.LimitError, match="4097 x 4096"):
        limits.check_preview("crop", "image/png", png_bomb(4097, 4096), LIM)
    small = limits.ReceiveLimits(max_preview_bytes=100)
    with pytest.raises(limits.LimitError, match="bytes; the client accepts at most 100"):
        limits.check_preview("crop", "image/png", png_bytes(64, 64), small)
    with pytest.raises(limits.LimitError, match="not a readable image"):
        limits.check_preview("crop", "image/png", os.urandom(64), LIM)
    with pytest.raises(limits.LimitError, match="declared as image/jpeg"):
        limits.check_preview("crop", "image/jpeg", png_bytes(), LIM)


def test_sidecar_and_result_limits():
    assert limits.json_depth(1) == 0 and limits.json_depth([]) == 1
    assert limits.json_depth({"a": [{"b": [1]}]}) == 4
    deep = []
    cur = deep
    for _ in range(5000):                 # no recursion: this would overflow a recursive walk
        cur.append([])
        cur = cur[0]
    assert limits.json_depth(deep) == 5001
    limits.check_result(b"glTF", {"generator": "offline", "timings_s": {"fit": 1.0}}, LIM)
    with pytest.raises(limits.LimitError, match="nested 33 levels deep"):
        nested = {}
        cur = nested
        for _ in range(32):
            cur["x"] = {}
            cur = cur["x"]
        limits.check_result(b"", nested, LIM)
    with pytest.raises(limits.LimitError, match="bytes of JSON"):
        limits.check_result(b"", {"blob": "x" * (1024 * 1024)}, LIM)
    with pytest.raises(limits.LimitError, match="the result GLB is 11 bytes"):
        limits.check_result(b"x" * 11, {}, limits.ReceiveLimits(max_result_bytes=10))


def test_rate_limit_is_a_token_bucket():
    now = [0.0]
    r = limits.RateLimit(per_s=10, burst=5, clock=lambda: now[0])
    assert all(r.take() for _ in range(5)) and not r.take()
    now[0] += 0.25                       # 2.5 tokens back
    assert r.take() and r.take() and not r.take()
    now[0] += 100
    assert sum(r.take() for _ in range(10)) == 5


def test_client_codes_never_collide_with_wire_codes():
    assert not set(limits.CLIENT_CODES) & set(ERROR_CODES)
    assert addon_messages.BAD_RESULT == limits.BAD_RESULT
    assert addon_messages.RECEIVE_LIMIT == limits.RECEIVE_LIMIT
    for code in (limits.BAD_RESULT, limits.RECEIVE_LIMIT):
        assert code in addon_messages.ADVICE and code in batch.BATCH_ADVICE


# ---- the client and the add-on against the fake backend ----------------------------------------

KEY = os.urandom(32).hex().encode()

# behaviour -> the code the add-on's blocking run_job reports (None: a GLB arrives, and the
# add-on's structure check decides)
RUN_JOB = {
    "good": None, "random": None, "truncated": None, "gltf_error": None,
    "wrong_sha": "BAD_RESULT", "preview_bomb": "RECEIVE_LIMIT",
    "preview_paths": "RECEIVE_LIMIT", "deep_sidecar": ("BAD_RESULT", "RECEIVE_LIMIT"),
    "deeper_sidecar": "BAD_RESULT", "flood": "RECEIVE_LIMIT", "silence": "TIMEOUT",
}


@pytest.fixture
def key_file(tmp_path):
    p = tmp_path / "fake.key"
    p.write_bytes(KEY)
    p.chmod(0o600)
    return str(p)


def request(name="x.png") -> JobRequest:
    return JobRequest(png_bytes(64, 64), "image/png", name, None, {})


@pytest.mark.parametrize("behaviour", sorted(RUN_JOB))
def test_run_job_reports_each_bad_result_clearly(behaviour, key_file):
    want = RUN_JOB[behaviour]
    with FakeBackend({"x.png": behaviour}, key=KEY) as fake:
        conn = ConnectionSettings(fake.address, key_file, 3.0, 2.0)
        if want is None:
            out = run_job(conn, request())
            got = None
            if behaviour in ("good", "gltf_error"):
                check_glb(out.glb)
            else:
                with pytest.raises(GlbError):
                    check_glb(out.glb)
        else:
            with pytest.raises(batch.JobError) as e:
                run_job(conn, request())
            got = e.value.code
            assert got in (want if isinstance(want, tuple) else (want,)) and e.value.message
        if got == "RECEIVE_LIMIT":              # the refused job is cancelled on the backend
            end = time.monotonic() + 2
            while not fake.names("cancel") and time.monotonic() < end:
                time.sleep(0.02)
            assert fake.names("cancel"), behaviour
        assert fake.bad_signatures == 0


def test_a_lost_backend_is_disconnected_not_a_hang(key_file):
    with FakeBackend({"x.png": "lost"}, key=KEY) as fake:
        conn = ConnectionSettings(fake.address, key_file, 1.0, 30.0)
        with pytest.raises(batch.JobError) as e:       # not the 30 s job timeout
            run_job(conn, request())
    assert e.value.code == "DISCONNECTED" and "has not answered" in e.value.message


def test_client_refuses_a_preview_bomb_without_keeping_it(key_file):
    """Non-blocking API: the preview never becomes an event or a handle's preview."""
    with FakeBackend({"x.png": "preview_bomb"}, key=KEY) as fake:
        with Client(fake.address, key=KEY) as c:
            c.wait_connected(5)
            h = c.submit(png_bytes(64, 64), name="x.png")
            kinds = []
            end = time.monotonic() + 5
            while not h.done and time.monotonic() < end:
                kinds += [ev.kind for ev in c.poll(0.1)]
            assert h.state == "failed" and h.error.code == "RECEIVE_LIMIT"
            assert "preview" not in kinds and h.previews == {}
            with pytest.raises(JobError, match="60000 x 60000"):
                raise h.error


def test_configured_receive_limits_apply(key_file):
    cfg = ClientConfig(receive_limits=limits.ReceiveLimits(max_result_bytes=100))
    with FakeBackend(key=KEY) as fake:
        with Client(fake.address, key=KEY, config=cfg) as c:
            c.wait_connected(5)
            with pytest.raises(JobError, match="the result GLB is") as e:
                c.run_job(png_bytes(64, 64), deadline_s=5)
            assert e.value.code == "RECEIVE_LIMIT"


@pytest.mark.parametrize("behaviour,code", [("preview_bomb", "RECEIVE_LIMIT"),
                                            ("flood", "RECEIVE_LIMIT"),
                                            ("deeper_sidecar", "BAD_RESULT")])
def test_panel_worker_thread_ends_with_an_error_and_a_bounded_queue(behaviour, code, key_file,
                                                                    tmp_path):
    """The panel's network thread (core.worker.JobWorker): one error event, no preview bomb
    handed to Blender, and a flood never fills the main thread's queue."""
    with FakeBackend({"x.png": behaviour}, key=KEY) as fake:
        w = JobWorker(ConnectionSettings(fake.address, key_file, 3.0, 10.0), request(),
                      tmp_path)
        w.start()
        w.join(10)
        assert not w.is_alive()
    events = []
    while (ev := w.next_event()) is not None:
        events.append(ev)
    assert events[-1][:2] == ("error", code), events[-1]
    assert len(events) <= limits.ReceiveLimits().progress_burst + 10
    if behaviour == "preview_bomb":                   # never handed to Blender to decode
        assert not [e for e in events if e[0] == "preview"], events
    assert not list(tmp_path.glob("*.glb"))


def test_batch_over_three_photos_with_the_real_network_side(tmp_path, key_file):
    """core.batch.run_batch with core.worker.run_job against the fake backend (place() is a
    stand-in for the importer): the bad photo is named, the good heads are written."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in ("a.png", "b.png", "c.png"):
        (photos / n).write_bytes(png_bytes(64, 64))
    for behaviour, code in (("random", "BAD_RESULT"), ("truncated", "BAD_RESULT"),
                            ("wrong_sha", "BAD_RESULT"), ("preview_bomb", "RECEIVE_LIMIT"),
                            ("silence", "TIMEOUT")):
        out = tmp_path / behaviour
        with FakeBackend({"b.png": behaviour}, key=KEY) as fake:
            s = batch.settings_from_args([str(photos), "--glb-dir", str(out), "--address",
                                          fake.address, "--key-file", key_file,
                                          "--connect-timeout", "3", "--job-timeout", "2"])

            def generate(photo, cell):
                return run_job(s.connection, request(photo.name))

            summary = batch.run_batch(s, generate, lambda name, o, cell: [name],
                                      log=lambda m: None)
        d = summary.to_dict()
        assert summary.exit_code() == batch.EXIT_FAILED and d["succeeded"] == 2, d["failed"]
        assert [f["photo"] for f in d["failed"]] == [str(photos / "b.png")]
        assert d["failed"][0]["code"] == code and d["failed"][0]["advice"]
        assert sorted(p.name for p in out.glob("*.glb")) == (
            ["a.glb", "b.rejected.glb", "c.glb"] if behaviour in ("random", "truncated")
            else ["a.glb", "c.glb"])
