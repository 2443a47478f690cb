"""The Live Link Face / ARKit CSV reader of the add-on (pure Python: no bpy).

`livelink_csv` writes takes with Live Link Face's real header (Timecode, BlendShapeCount, the
52 PascalCase blendshapes, 9 rotations: shared/data/livelinkface/FORMAT.md); the Blender test
(tests/test_blender_animation.py) uses it too."""
from __future__ import annotations

import math

import pytest

from gen3dface.blender_addon.core import livelink
from gen3dface.blender_addon.core.livelink import (ARKIT_BLENDSHAPES, ROTATIONS, TakeError,
                                                   TakeSettings, parse_take, parse_timecode,
                                                   plan_timeline, read_take, rotate,
                                                   rotation_quaternion)

# Live Link Face's column order, as the app writes it (JawRight before JawLeft, MouthRight
# before MouthLeft: not ARKit's documentation order; the reader goes by name)
LLF_BLENDSHAPES = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
    "EyeSquintLeft", "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight",
    "EyeLookOutRight", "EyeLookUpRight", "EyeSquintRight", "EyeWideRight", "JawForward",
    "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthRight",
    "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight",
    "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft",
    "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
    "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft",
    "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft",
    "NoseSneerRight", "TongueOut")
LLF_HEADER = ("Timecode", "BlendShapeCount", *LLF_BLENDSHAPES, *ROTATIONS)


def value(name: str, i: int) -> float:
    """A distinct, checkable value for blendshape `name` (PascalCase) on row i."""
    k = LLF_BLENDSHAPES.index(name)
    return round(((k * 7 + i * 13) % 100) / 100.0, 4)


def livelink_csv(n_rows: int = 5, start: str = "12:34:56", first_frame: int = 10,
                 rotations: dict | None = None, subframe: bool = True) -> str:
    """A take as Live Link Face writes it: one row per frame at 60 fps, timecodes
    HH:MM:SS:FF.fff, BlendShapeCount 61, rotations from `rotations` {name: per-row list}."""
    rot = rotations or {}
    lines = [",".join(LLF_HEADER)]
    h, m, s = (int(x) for x in start.split(":"))
    for i in range(n_rows):
        f = first_frame + i
        sec, ff = s + f // 60, f % 60
        tc = f"{h:02d}:{m:02d}:{sec:02d}:{ff:02d}" + (".000" if subframe else "")
        vals = [str(value(n, i)) for n in LLF_BLENDSHAPES]
        rots = [str(rot.get(r, [0.0] * n_rows)[i]) for r in ROTATIONS]
        lines.append(",".join([tc, "61", *vals, *rots]))
    return "\n".join(lines) + "\n"


def test_the_header_the_app_writes():
    assert len(LLF_HEADER) == 63
    assert {livelink.csv_column(n) for n in ARKIT_BLENDSHAPES} == set(LLF_BLENDSHAPES)


def test_add_on_and_backend_agree_on_the_52_names():
    from gen3dface.backend.headmodel.arkit import ARKIT_BLENDSHAPES as BACKEND
    assert ARKIT_BLENDSHAPES == BACKEND


def test_reads_a_live_link_face_take_by_name():
    take = parse_take(livelink_csv(5, first_frame=58))       # crosses a second boundary
    assert take.n_frames == 5 and take.fps == 60.0
    assert take.frames == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert set(take.shapes) == set(ARKIT_BLENDSHAPES)
    for i in range(5):
        assert take.shapes["jawOpen"][i] == value("JawOpen", i)
        assert take.shapes["tongueOut"][i] == value("TongueOut", i)
        assert take.shapes["mouthLeft"][i] == value("MouthLeft", i)   # by name, not position
    assert set(take.rotations) == set(ROTATIONS)
    assert take.missing_shapes == [] and take.missing_rotations == [] and take.ignored == []
    assert take.timecodes[2] == "12:34:57:00.000"


def test_timecodes():
    assert parse_timecode("00:00:01:00", 60) == 60
    assert parse_timecode("01:00:00:00", 30) == 108000
    assert parse_timecode("00:00:00:01.5", 60) == pytest.approx(1.5)
    assert parse_timecode("00:00:00:01.001", 60) == pytest.approx(1.001)
    for bad in ("", "12:00", "00:00:00", "aa:00:00:00", "00:61:00:00", "00:00:00:60",
                "00:00:00:01.x", "00:00:00:01:02"):
        with pytest.raises(TakeError):
            parse_timecode(bad, 60)
    assert parse_timecode("00:00:00:29", 30) == 29
    with pytest.raises(TakeError, match="does not exist at 30 fps"):
        parse_timecode("00:00:00:45", 30)


def test_camel_case_columns_and_missing_rotations_are_read():
    names = list(ARKIT_BLENDSHAPES)
    text = "timecode," + ",".join(names) + ",Extra\n"
    text += "00:00:00:00," + ",".join(["0.5"] * 52) + ",x\n"
    text += "00:00:00:02," + ",".join(["0.25"] * 52) + ",y\n"
    take = parse_take(text)
    assert take.frames == [0.0, 2.0]                         # a dropped frame leaves a gap
    assert take.shapes["browInnerUp"] == [0.5, 0.25]
    assert take.rotations == {} and take.missing_rotations == list(ROTATIONS)
    assert take.ignored == ["Extra"]
    assert any("HeadYaw" in n for n in take.notes())


def test_rotation_units():
    rots = {"HeadYaw": [0.5, -1.0], "LeftEyePitch": [0.1, 0.2]}
    take = parse_take(livelink_csv(2, rotations=rots))
    assert take.rotations["HeadYaw"] == pytest.approx([math.pi / 4, -math.pi / 2])
    take = parse_take(livelink_csv(2, rotations=rots), TakeSettings(rotation_units="degrees"))
    assert take.rotations["HeadYaw"][0] == pytest.approx(math.radians(0.5))
    take = parse_take(livelink_csv(2, rotations=rots), TakeSettings(rotation_units="radians"))
    assert take.rotations["LeftEyePitch"] == pytest.approx([0.1, 0.2])


def _replace_cell(text: str, row: int, column: str, new: str) -> str:
    lines = text.splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = new
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


def _drop_column(text: str, column: str) -> str:
    lines = [ln.split(",") for ln in text.splitlines()]
    k = lines[0].index(column)
    return "\n".join(",".join(c[:k] + c[k + 1:]) for c in lines) + "\n"


@pytest.mark.parametrize("make, message", [
    (lambda t: "", "empty"),
    (lambda t: "\n\n  \n", "empty"),
    (lambda t: t.splitlines()[0] + "\n", "no frames"),
    (lambda t: _drop_column(t, "Timecode"), "no Timecode column"),
    (lambda t: _drop_column(t, "JawOpen"), "missing: JawOpen"),
    (lambda t: _replace_cell(t, 2, "JawOpen", "abc"), "row 3, column JawOpen: 'abc' is not a number"),
    (lambda t: _replace_cell(t, 1, "EyeBlinkLeft", ""), "row 2, column EyeBlinkLeft"),
    (lambda t: _replace_cell(t, 3, "CheekPuff", "nan"), "not a finite number"),
    (lambda t: _replace_cell(t, 2, "Timecode", "yesterday"), "row 3, column Timecode"),
    (lambda t: _replace_cell(t, 3, "Timecode", "12:34:56:10.000"), "does not come after"),
    (lambda t: _replace_cell(t, 2, "BlendShapeCount", "6.1"), "not a whole number"),
    (lambda t: _replace_cell(t, 2, "HeadYaw", "left"), "row 3, column HeadYaw"),
    (lambda t: t.replace("BlendShapeCount", "JawOpen"), "appears twice"),
    (lambda t: t.splitlines()[0] + "\n" + t.splitlines()[1] + ",0.5\n", "has 64 values"),
    (lambda t: "a,b,c\n1,2,3\n", "no Timecode column"),
    (lambda t: "Timecode,Foo\n00:00:00:00,1\n", "no ARKit blendshape columns"),
])
def test_malformed_takes_are_refused(make, message):
    with pytest.raises(TakeError, match=message):
        parse_take(make(livelink_csv(4)))


def test_missing_blendshapes_allowed_when_asked():
    text = _drop_column(_drop_column(livelink_csv(3), "TongueOut"), "CheekPuff")
    take = parse_take(text, TakeSettings(allow_missing=True))
    assert take.missing_shapes == ["CheekPuff", "TongueOut"]
    assert "tongueOut" not in take.shapes and len(take.shapes) == 50


def test_files_and_bad_files(tmp_path):
    p = tmp_path / "take.csv"
    p.write_text(livelink_csv(3))
    assert read_take(p).n_frames == 3
    with pytest.raises(TakeError, match="take.csv"):
        p.write_bytes(b"\xff\xfe\x00garbage")
        read_take(p)
    with pytest.raises(TakeError, match="cannot read"):
        read_take(tmp_path / "nope.csv")


def test_values_out_of_range_are_clamped_and_counted():
    take = parse_take(_replace_cell(livelink_csv(3), 1, "JawOpen", "1.2"))
    assert take.shapes["jawOpen"][0] == 1.0 and take.clamped == 1


def test_settings_are_checked():
    with pytest.raises(TakeError, match="frame rate"):
        TakeSettings(fps=0)
    with pytest.raises(TakeError, match="rotation units"):
        TakeSettings(rotation_units="gradians")


def test_rotation_conventions():
    # yaw +90 deg turns the face (Blender -Y) toward the subject's left (+X)
    fwd = rotate(rotation_quaternion(math.pi / 2, 0, 0), (0.0, -1.0, 0.0))
    assert fwd == pytest.approx((1.0, 0.0, 0.0), abs=1e-9)
    # pitch +90 deg: the nose goes down (-Z)
    fwd = rotate(rotation_quaternion(0, math.pi / 2, 0), (0.0, -1.0, 0.0))
    assert fwd == pytest.approx((0.0, 0.0, -1.0), abs=1e-9)
    # roll +90 deg: the top of the head goes to the subject's right (-X)
    up = rotate(rotation_quaternion(0, 0, math.pi / 2), (0.0, 0.0, 1.0))
    assert up == pytest.approx((-1.0, 0.0, 0.0), abs=1e-9)
    q = rotation_quaternion(0.3, -0.2, 0.1)
    assert sum(c * c for c in q) == pytest.approx(1.0)


def test_timeline_plans():
    take = parse_take(livelink_csv(4))
    p = plan_timeline(take, "take", 1, 24.0)
    assert p.frames == [1.0, 2.0, 3.0, 4.0] and p.fps == 60 and p.fps_base == 1.0
    assert (p.frame_start, p.frame_end) == (1, 4)
    p = plan_timeline(take, "scene", 1, 24.0)                # 60 fps take on a 24 fps scene
    assert p.frames == pytest.approx([1.0, 1.4, 1.8, 2.2]) and p.fps is None
    take = parse_take(livelink_csv(2), TakeSettings(fps=59.94))
    p = plan_timeline(take, "take", 0, 24.0)
    assert p.fps == 60 and 60 / p.fps_base == pytest.approx(59.94)
    with pytest.raises(TakeError):
        plan_timeline(take, "real", 1, 24.0)
