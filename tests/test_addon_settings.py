"""Settings, messages, the online-access policy, photo bytes, the local-backend launcher
(pure Python)."""
import os
import stat
import sys

import numpy as np
import pytest

from gen3dface.blender_addon.core import local_backend, messages, network_policy, photo
from gen3dface.blender_addon.core.settings import (ConnectionSettings, GenerateOptions,
                                                   LocalBackendSettings, SettingsError)


def test_generate_options_match_the_pipeline_job_options_keys():
    d = GenerateOptions(generator="offline", seed=3, quality="high", texture_size=2048,
                        output_kind="both").to_dict()
    assert d == {"generator": "offline", "seed": 3, "quality": "high", "texture_size": 2048,
                 "output_kind": "both", "neck_skin": True}    # neck_skin: always sent
    for bad in (dict(generator="magic"), dict(quality="ultra"), dict(texture_size=1000),
                dict(output_kind="mesh"), dict(seed=-1)):
        with pytest.raises(SettingsError):
            GenerateOptions(**bad)


def test_connection_settings_validate():
    with pytest.raises(SettingsError, match="tcp://"):
        ConnectionSettings(address="127.0.0.1:5555")
    with pytest.raises(SettingsError):
        ConnectionSettings(connect_timeout_s=0)
    with pytest.raises(SettingsError):
        ConnectionSettings(job_timeout_s=float("nan"))


@pytest.mark.parametrize("address,local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.1.2.3:1", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/g3f", True), ("tcp://10.0.0.2:5555", False),
    ("tcp://gpu-box:5555", False), ("tcp://[2001:db8::1]:5555", False)])
def test_loopback_detection(address, local):
    assert network_policy.is_loopback(address) is local
    blocked = network_policy.check_online_access(address, online_access=False)
    assert (blocked is None) is local
    assert network_policy.check_online_access(address, online_access=True) is None
    if blocked is not None:
        assert blocked.code == messages.OFFLINE and "Allow Online Access" in blocked.advice


def test_every_protocol_error_code_has_advice():
    from gen3dface.protocol.errors import ERROR_CODES
    for code in ERROR_CODES:
        e = messages.user_error(code, "backend says so")
        assert e.message == "backend says so" and e.advice
    unknown = messages.user_error("SOMETHING_NEW", "")
    assert unknown.message == "SOMETHING_NEW" and unknown.advice == messages.ADVICE["INTERNAL"]


def test_sniff_media_type():
    assert photo.sniff_media_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert photo.sniff_media_type(b"\xff\xd8\xff\xe0....") == "image/jpeg"
    assert photo.sniff_media_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    with pytest.raises(ValueError, match="PNG, JPEG or WebP"):
        photo.sniff_media_type(b"GIF89a....")


def test_png_from_blender_pixels_flips_rows_and_decodes():
    from PIL import Image
    import io
    w, h = 3, 2
    # Blender buffer: bottom row first. Bottom row red, top row blue.
    px = np.zeros((h, w, 4), np.float32)
    px[0, :, 0] = 1.0
    px[1, :, 2] = 1.0
    px[..., 3] = 1.0
    png = photo.png_from_blender_pixels(px.ravel(), w, h)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape == (2, 3, 3)
    assert (img[0] == (0, 0, 255)).all() and (img[1] == (255, 0, 0)).all()
    with pytest.raises(ValueError):
        photo.png_from_blender_pixels(px.ravel()[:-1], w, h)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_local_backend_key_file_is_owner_only_and_loadable(tmp_path):
    from gen3dface.protocol import signing
    p = local_backend.write_key_file(tmp_path / "k" / "backend.key")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    key = signing.load_key(p)                    # the protocol accepts it
    assert len(key) == 64
    p2 = local_backend.write_key_file(p)         # a new key replaces the old one
    assert signing.load_key(p2) != key


def test_serve_command_is_loopback_with_key(tmp_path):
    with pytest.raises(SettingsError, match="Backend Python"):
        local_backend.serve_command(LocalBackendSettings(), tmp_path / "k")
    with pytest.raises(SettingsError, match="does not exist"):
        local_backend.serve_command(LocalBackendSettings(python=str(tmp_path / "nope")), "k")
    cmd = local_backend.serve_command(
        LocalBackendSettings(python=sys.executable, port=6001, device="cuda"), tmp_path / "k")
    assert cmd[:4] == [sys.executable, "-m", "gen3dface.backend.cli", "serve"]
    assert cmd[cmd.index("--bind") + 1] == "tcp://127.0.0.1:6001"
    assert cmd[cmd.index("--key-file") + 1] == str(tmp_path / "k")
    assert cmd[cmd.index("--device") + 1] == "cuda"


def test_local_backend_starts_real_serve_and_stops_it(tmp_path):
    """'Start a local backend' as the preferences do it: the real `gen3dface serve` on
    loopback with a fresh key; Test connection answers; stop() ends the process group."""
    import socket
    from gen3dface.blender_addon.core.worker import fetch_capabilities
    from gen3dface.blender_addon.core.settings import ConnectionSettings
    try:
        from gen3dface.backend import cli
        cli.build_parser()
    except ImportError as e:
        pytest.skip(f"the gen3dface CLI cannot load yet: {e}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = local_backend.LocalBackend(LocalBackendSettings(python=sys.executable, port=port),
                                   state_dir=tmp_path / "state")
    b.start()
    try:
        conn = ConnectionSettings(b.address, str(b.key_file), 1.0, 10.0)
        ready = b.wait_ready(lambda: fetch_capabilities(conn)[0], timeout_s=120)
        assert ready, b.exit_message()
        assert stat.S_IMODE(os.stat(b.key_file).st_mode) == 0o600
        pid = b.process.pid
    finally:
        b.stop()
    assert not b.running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
