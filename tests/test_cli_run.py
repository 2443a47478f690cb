"""`gen3dface run`: Ctrl-C, warnings on the terminal, up-front refusals, the photo size guard."""
from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from gen3dface.backend.images import check_image_header, encode_png
from gen3dface.backend.contracts import PipelineError
from gen3dface.backend.commands.cli_support import EXIT_CANCELLED, EXIT_OK, EXIT_USAGE
from gen3dface.backend.service.harness import png_bomb

from test_cli_service import _start_cli, _wait_for_line, cli


def test_ctrl_c_on_run_cancels_the_pipeline_and_writes_the_summary(tmp_path, data_dir, faces_dir):
    summary = tmp_path / "s.json"
    proc = _start_cli(["run", str(faces_dir / "biden.jpg"), "-o", str(tmp_path / "b.glb"),
                       "--assets", str(data_dir), "--json", str(summary)], tmp_path)
    try:
        lines = _wait_for_line(proc, "] fit", timeout_s=60)    # fitting the head model
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == EXIT_CANCELLED
    finally:
        proc.kill()
    s = json.loads(summary.read_text())
    assert s["exit_code"] == EXIT_CANCELLED and s["error"]["code"] == "CANCELLED"
    time.sleep(0.2)
    assert "interrupted (Ctrl-C): the pipeline was cancelled" in "".join(lines)
    assert not (tmp_path / "b.glb").exists()


def test_run_prints_the_sidecar_warnings(tmp_path, faces_dir, capsys, monkeypatch):
    # no head model anywhere the lookup searches (assets.search_folders), so the run falls
    # back and says so, whatever this machine has installed
    monkeypatch.delenv("GEN3DFACE_ASSETS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    out = tmp_path / "tp.glb"
    assert cli(["run", str(faces_dir / "two_people.jpg"), "-o", str(out), "--quality", "draft",
                "--assets", str(tmp_path)]) == EXIT_OK            # no head model in tmp_path
    err = capsys.readouterr().err
    sidecar = json.loads((tmp_path / "tp.sidecar.json").read_text())
    assert "warning: 2 faces found; used the largest, most central one" in err
    for w in sidecar["warnings"]:
        assert f"warning: {w}" in err
    for f in sidecar["fallbacks"]:
        assert f"note: {f}" in err
    assert sidecar["fallbacks"] and err.index("wrote") < err.index("warning:")


def test_run_refuses_an_unwritable_output_before_running(tmp_path, capsys):
    photo = tmp_path / "face.png"
    photo.write_bytes(encode_png(np.zeros((40, 40, 3), np.uint8)))
    (tmp_path / "afile").write_text("x")
    s = tmp_path / "s.json"
    t0 = time.monotonic()
    for out in (tmp_path / "missing" / "x.glb", tmp_path / "afile" / "x.glb", tmp_path):
        assert cli(["run", str(photo), "-o", str(out), "--json", str(s)]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
        assert json.loads(s.read_text())["exit_code"] == EXIT_USAGE
    assert time.monotonic() - t0 < 5            # no pipeline was loaded


def test_run_device_cuda_without_cuda_is_a_usage_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    photo = tmp_path / "face.png"
    photo.write_bytes(encode_png(np.zeros((40, 40, 3), np.uint8)))
    assert cli(["run", str(photo), "-o", str(tmp_path / "x.glb"), "--device", "cuda"]) == EXIT_USAGE
    assert "no CUDA GPU" in capsys.readouterr().err
    assert cli(["run", str(photo), "-o", str(tmp_path / "x.glb"), "--device", "tpu"]) == EXIT_USAGE


def test_a_400_megapixel_png_gets_a_clean_message():
    with pytest.raises(PipelineError) as e:
        check_image_header(png_bomb(20000, 20000))
    assert e.value.code == "BAD_IMAGE"
    assert e.value.message == ("The photo is 20000x20000 (400 MP); the limit is 40 MP. "
                               "Scale it down and try again.")
    with pytest.raises(PipelineError, match="41 MP"):          # just over: Pillow would allow it
        check_image_header(png_bomb(6400, 6400, 4096))
    assert check_image_header(encode_png(np.zeros((20, 30, 3), np.uint8))) == ("PNG", 30, 20)


def _front_of_neck_colours(glb):
    """Texture colours (n, 3) in [0, 1] at the head's vertices on the front of the neck
    (11-16 cm below the nose tip, within 4 cm of the middle), read from the GLB's UVs."""
    import trimesh

    g = trimesh.load(glb).geometry["Head"]
    v, uv = np.asarray(g.vertices), np.asarray(g.visual.uv)
    tex = np.asarray(g.visual.material.baseColorTexture.convert("RGB"), np.float64) / 255.0
    nose = v[np.argmax(v[:, 2])]
    sel = ((v[:, 1] < nose[1] - 0.11) & (v[:, 1] > nose[1] - 0.16)
           & (v[:, 2] > nose[2] - 0.12) & (np.abs(v[:, 0]) < 0.04))
    h, w = tex.shape[:2]
    px = np.clip((uv[sel, 0] % 1) * w, 0, w - 1).astype(int)
    py = np.clip((1 - uv[sel, 1] % 1) * h, 0, h - 1).astype(int)
    return tex[py, px]


def _run_with_and_without(tmp_path, photo, data_dir, flag: str, names=("off", "on")):
    """`gen3dface run` (draft) on `photo` without and with `flag`: {name: (GLB path, sidecar)}."""
    runs = {}
    for name, extra in zip(names, ([], [flag])):
        out = tmp_path / f"{name}.glb"
        assert cli(["run", str(photo), "-o", str(out), "--quality", "draft",
                    "--assets", str(data_dir)] + extra) == EXIT_OK
        runs[name] = out, json.loads((tmp_path / f"{name}.sidecar.json").read_text())
    return runs


def test_neck_skin_option_paints_the_neck_with_skin(tmp_path, faces_dir, data_dir):
    """A photo of a man in a suit and tie (obama.jpg): by default (`--neck-skin`) the front of
    the neck is the face's skin tone, and the sidecar says so; with `--no-neck-skin` it carries
    the shirt and tie as the photo shows them."""
    got = {}
    runs = _run_with_and_without(tmp_path, faces_dir / "obama.jpg", data_dir, "--no-neck-skin",
                                 ("skin", "photo"))
    for name, (out, side) in runs.items():
        skin = np.asarray(side["texture"]["skin_rgb"])
        neck = _front_of_neck_colours(out)
        got[name] = side, float(np.linalg.norm(neck - skin, axis=1).mean()), len(neck)
    (photo, d_photo, n), (skin_run, d_skin, _) = got["photo"], got["skin"]
    print(f"front of the neck ({n} vertices), mean distance to the skin tone: "
          f"--no-neck-skin {d_photo:.3f}, default {d_skin:.3f}")  # measured 0.676, 0.008
    assert n >= 50
    assert photo["options"]["neck_skin"] is False and skin_run["options"]["neck_skin"] is True
    assert skin_run["texture"]["skin_mask"]["neck_skin"] is True
    assert d_photo > 0.3 and d_skin < 0.08
    # his grey hair was read off the seen scalp (texture.hair_rgb): darker than his skin, grey
    hair = np.asarray(photo["texture"]["hair_rgb"])
    assert hair.mean() < skin.mean() - 0.1 and hair.max() - hair.min() < 0.1, hair


def test_delit_texture_option_de_lights_the_skin_and_says_so(tmp_path, faces_dir, data_dir):
    """`--delit-texture`: the sidecar records the estimated light and the skin texture differs
    from the default (lit) run's; without it nothing is de-lit."""
    import trimesh

    runs = {}
    for name, (out, side) in _run_with_and_without(tmp_path, faces_dir / "alfw2.png", data_dir,
                                                   "--delit-texture", ("lit", "delit")).items():
        tex = trimesh.load(out).geometry["Head"].visual.material.baseColorTexture
        runs[name] = side["texture"], np.asarray(tex.convert("RGB"), np.float64)
    (lit, t_lit), (delit, t_del) = runs["lit"], runs["delit"]
    assert lit["delit"] is False and lit["delight"] is None
    assert delit["delit"] is True and delit["delight"]["n_samples"] >= 400
    assert np.abs(t_lit - t_del).mean() > 1.0


def test_texture_sources_map_says_where_each_texel_came_from(tmp_path, faces_dir, data_dir):
    """`--texture-sources PNG`: the skin atlas's sources map beside the GLB, in the texture's
    own layout (same size as the base colour texture): the face the photo saw is red, the
    unseen scalp of a haired head blue, the mirror twin green; the GLB is the same as without
    the flag; a name that is not a .png is refused before any work."""
    import trimesh
    from PIL import Image

    photo = faces_dir / "image00302.jpg"                  # a frontal face with dark hair
    runs = _run_with_and_without(tmp_path, photo, data_dir,
                                 f"--texture-sources={tmp_path / 'src.png'}")
    assert runs["off"][0].read_bytes() == runs["on"][0].read_bytes()
    tex = trimesh.load(runs["on"][0]).geometry["Head"].visual.material.baseColorTexture
    src = np.asarray(Image.open(tmp_path / "src.png").convert("RGB"), np.int64)
    assert src.shape[:2] == (tex.size[1], tex.size[0])
    assert src.sum(2).max() <= 255 + 3                    # shares of one texel: at most 1
    size = src.shape[0]
    face = src[int(0.40 * size):int(0.50 * size), int(0.36 * size):int(0.42 * size)]  # a cheek
    back = src[int(0.30 * size):int(0.50 * size), int(1.40 * size):int(1.60 * size)]
    print("face (mean r, g, b):", face.reshape(-1, 3).mean(0).round(1),
          "back of the scalp:", back.reshape(-1, 3).mean(0).round(1),
          "green anywhere:", (src[..., 1] > 128).mean().round(4))
    assert face[..., 0].mean() > 200                      # the cheek under the eye: the photo
    assert back[..., 2].mean() > 200                      # the back of the head: hair
    assert (src[..., 1] > 128).mean() > 0.005             # the mirror filled something
    assert cli(["run", str(photo), "-o", str(tmp_path / "x.glb"),
                "--texture-sources", str(tmp_path / "x.jpg")]) == EXIT_USAGE
    assert not (tmp_path / "x.glb").exists()
