"""The `run`, `submit` and `serve` commands: arguments, refusals, exit codes, outputs."""
from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pytest

from gen3dface.backend.commands import run, serve, submit
from gen3dface.backend.images import encode_png
from gen3dface.backend.commands.cli_support import (EXIT_CANCELLED, EXIT_INPUT, EXIT_INTERNAL,
                                                   EXIT_OK, EXIT_SERVER, EXIT_USAGE, exit_code_for)
from gen3dface.backend.service.harness import ServerThread, SyntheticWorkload, expected_result, free_tcp_port


def cli(argv: list[str]) -> int:
    """Our three commands, parsed exactly as `gen3dface` parses them."""
    p = argparse.ArgumentParser(prog="gen3dface")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in (run, submit, serve):
        mod.add_parser(sub)
    args = p.parse_args(argv)
    return args.func(args)


@pytest.fixture
def photo_file(tmp_path):
    p = tmp_path / "face.png"
    p.write_bytes(encode_png(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)))
    return p


def test_exit_codes():
    assert exit_code_for(None) == EXIT_OK
    assert exit_code_for("NO_FACE") == exit_code_for("BAD_IMAGE") == EXIT_INPUT
    assert exit_code_for("QUEUE_FULL") == exit_code_for("AUTH") == EXIT_SERVER
    assert exit_code_for("CANCELLED") == EXIT_CANCELLED
    assert exit_code_for("INTERNAL") == exit_code_for("SOMETHING_NEW") == EXIT_INTERNAL


@pytest.mark.parametrize("endpoint,loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.1.2.3:1", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/x", True), ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False), ("tcp://10.0.0.5:5555", False), ("tcp://eth0:5555", False)])
def test_loopback_detection(endpoint, loopback):
    assert serve.is_loopback_endpoint(endpoint) is loopback


def test_serve_refuses_without_key_or_insecure(capsys):
    assert cli(["serve", "--bind", "tcp://127.0.0.1:0", "--ephemeral"]) == EXIT_USAGE
    assert "--key-file" in capsys.readouterr().err


def test_serve_refuses_insecure_on_a_network_address(capsys):
    assert cli(["serve", "--bind", "tcp://0.0.0.0:5555", "--insecure", "--ephemeral"]) == EXIT_USAGE
    assert "non-loopback" in capsys.readouterr().err


def test_serve_refuses_a_key_file_others_can_read(tmp_path, capsys):
    key = tmp_path / "key"
    key.write_text("x" * 64)
    key.chmod(0o644)
    assert cli(["serve", "--key-file", str(key), "--ephemeral"]) == EXIT_USAGE
    assert "chmod 600" in capsys.readouterr().err


def test_submit_writes_glb_sidecar_and_summary(tmp_path, photo_file, capsys):
    w = SyntheticWorkload(steps=20, step_s=0.001, result_bytes=50_000)
    out, summary = tmp_path / "head.glb", tmp_path / "summary.json"
    with ServerThread(w, insecure=True) as st:
        code = cli(["submit", str(photo_file), "-o", str(out), "--server", st.endpoint, "--insecure",
                    "--json", str(summary), "--seed", "4", "--timeout", "30"])
    assert code == EXIT_OK
    assert out.read_bytes() == expected_result(photo_file.read_bytes(), 50_000)
    s = json.loads(summary.read_text())
    assert s["ok"] is True and s["exit_code"] == 0 and s["options"] == {"seed": 4}
    assert s["glb_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert json.loads((tmp_path / "head.sidecar.json").read_text())["generator"] == "synthetic-test-harness"
    err = capsys.readouterr().err
    assert "\r" not in err and "wrote" in err          # not a terminal: quiet lines, no bar


def test_submit_refuses_a_non_image_before_sending(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a photo at all" * 4)
    summary = tmp_path / "s.json"
    code = cli(["submit", str(bad), "-o", str(tmp_path / "x.glb"), "--insecure",
                "--server", f"tcp://127.0.0.1:{free_tcp_port()}", "--json", str(summary)])
    assert code == EXIT_INPUT
    assert json.loads(summary.read_text())["error"]["code"] == "BAD_IMAGE"


def test_submit_needs_key_or_insecure(photo_file, tmp_path):
    assert cli(["submit", str(photo_file), "-o", str(tmp_path / "x.glb")]) == EXIT_USAGE


def test_submit_reports_an_absent_server(photo_file, tmp_path):
    summary = tmp_path / "s.json"
    code = cli(["submit", str(photo_file), "-o", str(tmp_path / "x.glb"), "--insecure",
                "--server", f"tcp://127.0.0.1:{free_tcp_port()}", "--give-up-disconnected", "0.5",
                "--json", str(summary)])
    assert code == EXIT_SERVER
    assert json.loads(summary.read_text())["error"]["code"] == "DISCONNECTED"
    assert not (tmp_path / "x.glb").exists()


def test_run_missing_photo_is_a_usage_error(tmp_path):
    assert cli(["run", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "x.glb")]) == EXIT_USAGE


def _start_cli(argv, tmp_path):
    """`python -m gen3dface.backend ARGV` in a child process (stderr piped, line by line)."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "gen3dface.backend", *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc, needle: str, timeout_s: float = 20.0) -> list[str]:
    import threading

    lines, found = [], threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if needle in line:
                found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout_s) and any(needle in x for x in lines), "".join(lines)
    return lines


def test_ctrl_c_on_submit_cancels_the_job_on_the_server(tmp_path, photo_file):
    """SIGINT mid-job: the client cancels the job (the server's policy is `keep`), exits 5,
    prints the job id and writes the --json summary with the job id and idempotency key."""
    import signal
    import time

    from gen3dface.protocol.client import Client

    w = SyntheticWorkload(steps=400, step_s=0.05, result_bytes=1000)    # 20 s if not cancelled
    summary = tmp_path / "s.json"
    with ServerThread(w, insecure=True, on_client_lost="keep") as st:
        proc = _start_cli(["submit", str(photo_file), "-o", str(tmp_path / "x.glb"), "--insecure",
                           "--server", st.endpoint, "--json", str(summary),
                           "--idempotency-key", "ctrl-c-test"], tmp_path)
        try:
            lines = _wait_for_line(proc, "] decode")        # the job is running
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == EXIT_CANCELLED
            assert time.monotonic() - t0 < 5
        finally:
            proc.kill()
        s = json.loads(summary.read_text())
        assert s["exit_code"] == EXIT_CANCELLED and s["error"]["code"] == "CANCELLED"
        assert s["idempotency_key"] == "ctrl-c-test" and s["job_id"] and s["cancel_confirmed"]
        time.sleep(0.2)
        assert s["job_id"] in "".join(lines)                # the job id is printed
        with Client(st.endpoint, insecure=True) as c:
            c.wait_connected(5)
            deadline = time.monotonic() + 5
            while (state := c.status(s["job_id"])["state"]) != "cancelled" \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
        assert state == "cancelled"
    assert not (tmp_path / "x.glb").exists()


class _NotesWorkload(SyntheticWorkload):
    """The synthetic workload with warnings and fallbacks in its sidecar."""

    def run(self, image, rig, options, sink, cancel):
        r = super().run(image, rig, options, sink, cancel)
        r.sidecar.update(warnings=["2 faces found; used the largest, most central one"],
                         fallbacks=["head_model: mediapipe face mesh (no head model installed)"])
        return r


def test_submit_prints_the_sidecar_warnings_and_fallbacks(tmp_path, photo_file, capsys):
    with ServerThread(_NotesWorkload(steps=3, step_s=0.001, result_bytes=100)) as st:
        code = cli(["submit", str(photo_file), "-o", str(tmp_path / "h.glb"), "--insecure",
                    "--server", st.endpoint])
    assert code == EXIT_OK
    err = capsys.readouterr().err
    assert "warning: 2 faces found; used the largest" in err
    assert "note: head_model: mediapipe face mesh (no head model installed)" in err
    assert err.index("wrote") < err.index("warning:")


@pytest.mark.parametrize("command", ["run", "submit"])
def test_usage_errors_write_the_json_summary(tmp_path, photo_file, command):
    extra = ["--insecure", "--server", f"tcp://127.0.0.1:{free_tcp_port()}"] if command == "submit" else []
    s = tmp_path / "s.json"
    assert cli([command, str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "x.glb"),
                "--json", str(s), *extra]) == EXIT_USAGE
    got = json.loads(s.read_text())
    assert got["ok"] is False and got["exit_code"] == EXIT_USAGE and "nope.jpg" in got["error"]["message"]
    # an output folder that does not exist: refused before any work, one line, no traceback
    s.unlink()
    assert cli([command, str(photo_file), "-o", str(tmp_path / "no" / "such" / "x.glb"),
                "--json", str(s), *extra]) == EXIT_USAGE
    assert "does not exist" in json.loads(s.read_text())["error"]["message"]


def test_submit_key_choice_is_a_usage_error_with_summary(tmp_path, photo_file):
    s = tmp_path / "s.json"
    assert cli(["submit", str(photo_file), "-o", str(tmp_path / "x.glb"), "--json", str(s)]) == EXIT_USAGE
    assert "--key-file" in json.loads(s.read_text())["error"]["message"]


@pytest.mark.parametrize("option", ["--quality", "--generator", "--output-kind"])
@pytest.mark.parametrize("command", ["run", "submit"])
def test_bad_choice_values_are_usage_errors(tmp_path, photo_file, option, command):
    with pytest.raises(SystemExit) as e:
        cli([command, str(photo_file), "-o", str(tmp_path / "x.glb"), option, "ultra"])
    assert e.value.code == EXIT_USAGE


def test_serve_new_key_file_that_exists_points_at_key_file(tmp_path, capsys):
    key = tmp_path / "key"
    key.write_text("x" * 64)
    key.chmod(0o600)
    assert cli(["serve", "--new-key-file", str(key), "--ephemeral",
                "--bind", "tcp://127.0.0.1:0"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--key-file {key}" in err and "reuse" in err
