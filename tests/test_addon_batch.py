"""Batch logic shared by `blender -b -c gen3dface` and scripts/blender_batch.py (pure)."""
import json

import pytest

from fake_backend import tiny_glb

from gen3dface.blender_addon.core import batch
from gen3dface.blender_addon.core.messages import UNREACHABLE


def make_photos(tmp_path, names=("a.jpg", "b.png", "c.webp")):
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a photo")
    return tmp_path


def test_collect_photos_expands_folders_sorted_and_drops_duplicates(tmp_path):
    d = make_photos(tmp_path)
    got = batch.collect_photos([str(d), str(d / "a.jpg")])
    assert [p.name for p in got] == ["a.jpg", "b.png", "c.webp"]


def test_collect_photos_refuses_missing_and_empty(tmp_path):
    with pytest.raises(batch.UsageError, match="no such photo"):
        batch.collect_photos([str(tmp_path / "nope.jpg")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(batch.UsageError, match="holds no"):
        batch.collect_photos([str(empty)])
    with pytest.raises(batch.UsageError, match="no photos"):
        batch.collect_photos([])


def test_settings_from_args_requires_an_output_and_reads_lists(tmp_path):
    d = make_photos(tmp_path)
    with pytest.raises(batch.UsageError, match="--blend"):
        batch.settings_from_args([str(d), "--insecure"])
    lst = tmp_path / "list.txt"
    lst.write_text(f"# photos\n{d / 'b.png'}\n\n{d / 'a.jpg'}\n")
    s = batch.settings_from_args(["--list", str(lst), "--glb-dir", str(tmp_path / "out"),
                                  "--quality", "draft", "--cameras", "8", "--seed", "7",
                                  "--insecure"])
    assert [p.name for p in s.photos] == ["b.png", "a.jpg"]
    assert s.options.to_dict() == {"generator": "auto", "seed": 7, "quality": "draft",
                                   "texture_size": 1024, "output_kind": "rigged",
                                   "neck_skin": True}
    assert s.ring.n_cameras == 8
    off = batch.settings_from_args([str(d), "--glb-dir", "x", "--no-neck-skin", "--insecure"])
    assert off.options.to_dict()["neck_skin"] is False          # the photo's clothes, sent
    with pytest.raises(batch.UsageError):
        batch.settings_from_args([str(d), "--glb-dir", "x", "--job-timeout", "-1", "--insecure"])
    with pytest.raises(batch.UsageError):
        batch.settings_from_args([str(d), "--glb-dir", "x", "--quality", "ultra", "--insecure"])


def test_grid_cells_are_distinct_centred_rows():
    cells = batch.grid_cells(5, 0.5)
    assert len(set(cells)) == 5
    # 3 columns, 2 rows, first row on top
    assert cells[0] == (-0.5, 0.0, 0.5) and cells[3] == (-0.5, 0.0, 0.0)
    assert sorted({c[0] for c in cells}) == [-0.5, 0.0, 0.5]
    assert batch.grid_cells(4, 1.0) == [(-0.5, 0.0, 1.0), (0.5, 0.0, 1.0),
                                        (-0.5, 0.0, 0.0), (0.5, 0.0, 0.0)]
    assert batch.grid_cells(0, 1.0) == []


def test_run_batch_summary_exit_codes_and_outputs(tmp_path):
    (tmp_path / "in").mkdir()
    d = make_photos(tmp_path / "in")
    out = tmp_path / "glbs"
    s = batch.settings_from_args([str(d), "--glb-dir", str(out), "--spacing", "1",
                                  "--insecure"])

    def generate(photo, cell):
        if photo.name == "b.png":
            raise batch.JobError("NO_FACE", "no face was found in the photo")
        return batch.JobOutput(glb=tiny_glb((photo.stem,)),
                               sidecar={"generator": "offline", "warnings": ["w1"]})

    placed = []
    summary = batch.run_batch(s, generate, lambda name, o, cell: placed.append((name, cell))
                              or [name], log=lambda m: None)
    assert summary.exit_code() == batch.EXIT_FAILED
    d_ = summary.to_dict()
    assert d_["succeeded"] == 2 and d_["photos"] == 3
    assert d_["failed"][0]["photo"].endswith("b.png")
    assert d_["failed"][0]["code"] == "NO_FACE" and "one face" in d_["failed"][0]["advice"]
    assert (out / "a.glb").read_bytes() == tiny_glb(("a",))
    assert json.loads((out / "a.sidecar.json").read_text())["generator"] == "offline"
    assert not (out / "b.glb").exists()
    assert [n for n, _ in placed] == ["a", "c"]
    assert placed[0][1] != placed[1][1]
    summary.write_json(tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["exit_code"] == 1


def test_run_batch_all_ok_is_zero_and_unreachable_fails_fast(tmp_path):
    d = make_photos(tmp_path)
    s = batch.settings_from_args([str(d), "--glb-dir", str(tmp_path / "o"), "--insecure"])
    ok = batch.run_batch(s, lambda p, c: batch.JobOutput(tiny_glb(), {}), lambda *a: [],
                         log=lambda m: None)
    assert ok.exit_code() == batch.EXIT_OK
    calls = []

    def down(photo, cell):
        calls.append(photo)
        raise batch.JobError(UNREACHABLE, "no backend answered at tcp://127.0.0.1:1")

    bad = batch.run_batch(s, down, lambda *a: [], log=lambda m: None)
    assert len(calls) == 1                         # the rest fail without waiting again
    assert [i.code for i in bad.items] == [UNREACHABLE] * 3
    assert bad.exit_code() == batch.EXIT_FAILED


def test_same_stem_photos_get_distinct_outputs(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "face.jpg").write_bytes(b"1")
    (tmp_path / "y" / "face.jpg").write_bytes(b"2")
    s = batch.settings_from_args([str(tmp_path / "x"), str(tmp_path / "y"),
                                  "--glb-dir", str(tmp_path / "o"), "--insecure"])
    batch.run_batch(s, lambda p, c: batch.JobOutput(tiny_glb((p.parent.name,)), {}),
                    lambda *a: [], log=lambda m: None)
    assert (tmp_path / "o" / "face.glb").read_bytes() == tiny_glb(("x",))
    assert (tmp_path / "o" / "face_2.glb").read_bytes() == tiny_glb(("y",))


def test_help_exits_zero_and_lists_the_exit_codes(tmp_path, capsys):
    with pytest.raises(batch.HelpShown):
        batch.settings_from_args(["--help"])
    out = capsys.readouterr().out
    assert "--key-file" in out and "--insecure" in out and "exit codes" in out


def test_a_missing_key_is_a_usage_error_naming_key_file(tmp_path):
    d = make_photos(tmp_path)
    with pytest.raises(batch.UsageError, match="--key-file") as e:
        batch.settings_from_args([str(d), "--glb-dir", "o"])
    assert "--insecure" in str(e.value) and "Preferences" not in str(e.value)
    key = tmp_path / "key"
    key.write_text("k" * 64)
    with pytest.raises(batch.UsageError, match="not both"):
        batch.settings_from_args([str(d), "--glb-dir", "o", "--insecure", "--key-file", str(key)])
    s = batch.settings_from_args([str(d), "--glb-dir", "o", "--key-file", str(key)])
    assert s.connection.key_file == str(key)


def test_each_head_gets_a_16_camera_ring_by_default(tmp_path):
    d = make_photos(tmp_path)
    s = batch.settings_from_args([str(d), "--glb-dir", "o", "--insecure"])
    assert s.ring is not None and s.ring.n_cameras == batch.DEFAULT_RING_CAMERAS == 16
    assert batch.settings_from_args([str(d), "--glb-dir", "o", "--insecure",
                                     "--cameras", "0"]).ring is None
    with pytest.raises(batch.UsageError):
        batch.settings_from_args([str(d), "--glb-dir", "o", "--insecure", "--cameras", "-1"])


def test_the_default_ring_is_centred_on_each_head_cell():
    """What batch_bpy sends: the ring around the cell, the head placed at the cell."""
    from gen3dface.blender_addon.core import rig as core_rig
    from gen3dface.blender_addon.core.settings import RingSettings

    cell = batch.grid_cells(3, 0.5)[2]
    r = core_rig.default_ring(cell, RingSettings(n_cameras=batch.DEFAULT_RING_CAMERAS))
    assert len(r.cameras) == 16
    assert [row[3] for row in r.head_to_world[:3]] == pytest.approx(list(cell))
    centre = [sum(c.cam_to_world[i][3] for c in r.cameras) / 16 for i in range(3)]
    assert centre == pytest.approx(list(cell), abs=1e-9)


def test_batch_advice_speaks_of_options_not_preferences():
    from gen3dface.blender_addon.core.messages import ADVICE

    for code in ADVICE:
        advice = batch.batch_error(code, "m").advice
        for word in ("Preferences", "preferences", "panel", "press Generate", "Test connection"):
            assert word not in advice, (code, advice)
    assert "--key-file" in batch.batch_error("AUTH", "bad signature").advice


def test_check_backend_turns_a_refused_key_into_a_usage_error(tmp_path):
    """One hello before the first photo, against a real keyed server."""
    from gen3dface.blender_addon.core.settings import ConnectionSettings
    from gen3dface.blender_addon.core.worker import connect, make_client
    from gen3dface.backend.service.harness import ServerThread, free_tcp_port
    from gen3dface.protocol.signing import generate_key_file

    d = make_photos(tmp_path)
    key = generate_key_file(tmp_path / "key")
    other = tmp_path / "other"
    generate_key_file(other)

    def hello_with(s):
        def hello():
            c = make_client(s.connection)
            try:
                connect(c, s.connection)
            finally:
                c.close()
        return hello

    with ServerThread(key=key) as st:
        common = [str(d), "--glb-dir", "o", "--address", st.endpoint, "--connect-timeout", "3"]
        ok = batch.settings_from_args([*common, "--key-file", str(tmp_path / "key")])
        assert batch.check_backend(ok, hello_with(ok)) is None
        for wrong in (["--insecure"], ["--key-file", str(other)]):
            s = batch.settings_from_args([*common, *wrong])
            with pytest.raises(batch.UsageError, match="--key-file") as e:
                batch.check_backend(s, hello_with(s))
            assert "AUTH" in str(e.value)
    s = batch.settings_from_args([str(d), "--glb-dir", "o", "--insecure", "--connect-timeout", "0.3",
                                  "--address", f"tcp://127.0.0.1:{free_tcp_port()}"])
    down = batch.check_backend(s, hello_with(s))
    assert down is not None and down.code == UNREACHABLE
    calls = []
    summary = batch.run_batch(s, lambda p, c: calls.append(p), lambda *a: [], log=lambda m: None,
                              unreachable=down)
    assert not calls and [i.code for i in summary.items] == [UNREACHABLE] * 3
    assert "--address" in summary.items[0].advice


# ---- one bad result costs one photo, never the batch (issue 20) -----------------------------

def three_photos(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for n in ("a.png", "b.png", "c.png"):
        (d / n).write_bytes(b"x")
    return d


def test_a_result_that_is_not_a_glb_fails_that_photo_only_and_is_kept_apart(tmp_path):
    d = three_photos(tmp_path)
    out = tmp_path / "glbs"
    s = batch.settings_from_args([str(d), "--glb-dir", str(out), "--insecure"])
    bad = {"a.png": b"\x00" * 64, "b.png": tiny_glb()[:100]}

    def generate(photo, cell):
        return batch.JobOutput(glb=bad.get(photo.name, tiny_glb()), sidecar={"w": 1})

    placed = []
    summary = batch.run_batch(s, generate, lambda n, o, c: placed.append(n) or [n],
                              log=lambda m: None)
    items = summary.items
    assert [i.ok for i in items] == [False, False, True] and summary.exit_code() == 1
    assert items[0].code == items[1].code == "BAD_RESULT"
    assert "not a GLB file" in items[0].message and "truncated" in items[1].message
    assert "rejected.glb" in items[0].advice and "--glb-dir" in items[0].advice
    assert placed == ["c"]                       # the importer never saw the bad ones
    assert sorted(p.name for p in out.iterdir()) == [
        "a.rejected.glb", "a.rejected.sidecar.json", "b.rejected.glb",
        "b.rejected.sidecar.json", "c.glb", "c.sidecar.json"]
    assert items[0].rejected_glb.endswith("a.rejected.glb") and not items[0].glb_path


def test_an_importer_exception_fails_that_photo_and_the_batch_goes_on(tmp_path):
    d = three_photos(tmp_path)
    out = tmp_path / "glbs"
    s = batch.settings_from_args([str(d), "--glb-dir", str(out), "--insecure"])

    class ImportFailed(RuntimeError):          # what blender/importer.py raises
        code, message = "CLIENT_IMPORT_FAILED", "Blender's glTF importer ...: KeyError: 9999"

    def place(name, o, cell):
        if name == "a":
            raise ImportFailed()
        if name == "b":
            raise ValueError("something unexpected")
        return [name]

    summary = batch.run_batch(s, lambda p, c: batch.JobOutput(tiny_glb(), {}), place,
                              log=lambda m: None)
    a, b, c = summary.items
    assert (a.code, b.code, c.ok) == ("CLIENT_IMPORT_FAILED", "CLIENT_IMPORT_FAILED", True)
    assert "KeyError: 9999" in a.message and "ValueError: something unexpected" in b.message
    assert sorted(p.name for p in out.glob("*.glb")) == ["a.rejected.glb", "b.rejected.glb",
                                                          "c.glb"]


def test_any_other_error_of_a_photo_is_a_client_error_and_the_batch_goes_on(tmp_path):
    d = three_photos(tmp_path)
    s = batch.settings_from_args([str(d), "--glb-dir", str(tmp_path / "o"), "--insecure"])

    def generate(photo, cell):
        if photo.name == "a.png":
            raise RecursionError("maximum recursion depth exceeded")
        # a hostile sidecar: warnings that are not a list, a generator that is not a string
        return batch.JobOutput(tiny_glb(), {"warnings": 7, "generator": {"x": 1}})

    summary = batch.run_batch(s, generate, lambda *a: [], log=lambda m: None)
    assert summary.items[0].code == "CLIENT_ERROR" and "RecursionError" in summary.items[0].message
    assert [i.ok for i in summary.items[1:]] == [True, True]
    assert summary.items[1].warnings == [] and summary.items[1].generator == "{'x': 1}"


class JobInterrupted(KeyboardInterrupt):       # the protocol client's, as worker.run_job raises it
    confirmed = True


def run_interruptible(*args, **kw):
    """run_batch, with a KeyboardInterrupt that escapes it reported as a failure (instead of
    stopping the whole pytest session)."""
    try:
        return batch.run_batch(*args, **kw)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped run_batch: nothing would be written")


def test_ctrl_c_keeps_what_was_done_and_names_the_rest(tmp_path):
    d = three_photos(tmp_path)
    out = tmp_path / "glbs"
    s = batch.settings_from_args([str(d), "--glb-dir", str(out), "--insecure"])

    def generate(photo, cell):
        if photo.name == "b.png":
            raise JobInterrupted()
        return batch.JobOutput(tiny_glb(), {})

    logged = []
    summary = run_interruptible(s, generate, lambda n, o, c: [n], log=logged.append)
    assert summary.exit_code() == batch.EXIT_INTERRUPTED == 130
    assert [i.code for i in summary.items] == ["", "CLIENT_INTERRUPTED", "CLIENT_NOT_RUN"]
    assert "confirmed the cancel" in summary.items[1].message
    assert "run the batch again" in summary.items[2].advice
    d_ = summary.to_dict()
    assert d_["interrupted"] and d_["photos"] == 3 and d_["succeeded"] == 1
    assert (out / "a.glb").is_file() and not (out / "c.glb").exists()
    assert logged[-1].startswith("interrupted:")


def test_ctrl_c_during_the_import_and_before_the_first_photo(tmp_path):
    d = three_photos(tmp_path)
    s = batch.settings_from_args([str(d), "--glb-dir", str(tmp_path / "o"), "--insecure"])

    def place(name, o, cell):
        if name == "a":
            raise KeyboardInterrupt()
        return [name]

    summary = run_interruptible(s, lambda p, c: batch.JobOutput(tiny_glb(), {}), place,
                                log=lambda m: None)
    assert [i.code for i in summary.items] == ["CLIENT_INTERRUPTED", "CLIENT_NOT_RUN",
                                               "CLIENT_NOT_RUN"]
    assert "importing its head" in summary.items[0].message
    calls = []
    summary = batch.run_batch(s, lambda p, c: calls.append(p), lambda *a: [],
                              log=lambda m: None, interrupted="before the first photo")
    assert not calls and summary.exit_code() == 130
    assert [i.code for i in summary.items] == ["CLIENT_NOT_RUN"] * 3


def test_batch_level_errors_make_exit_code_one(tmp_path):
    d = three_photos(tmp_path)
    s = batch.settings_from_args([str(d), "--glb-dir", str(tmp_path / "o"), "--insecure"])
    summary = batch.run_batch(s, lambda p, c: batch.JobOutput(tiny_glb(), {}),
                              lambda *a: [], log=lambda m: None)
    assert summary.exit_code() == 0
    summary.errors.append({"code": "CLIENT_ERROR", "message": "cannot save the .blend"})
    assert summary.exit_code() == 1 and summary.to_dict()["errors"]


def test_help_names_exit_code_130(capsys):
    with pytest.raises(batch.HelpShown):
        batch.settings_from_args(["--help"])
    assert "130 interrupted" in " ".join(capsys.readouterr().out.split())
