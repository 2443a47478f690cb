"""Issue 19, step 3: encryption and identities off-host (ZeroMQ CURVE through zmq.auth's ZAP
authenticator; SPEC section 12). Keys are made with `gen3dface keys` as a studio would; the
server runs in a thread on loopback with CURVE forced on (the same code path as a network
bind). HMAC signing stays on top."""
from __future__ import annotations

import argparse
import os
import stat
import time

import numpy as np
import pytest
import zmq

from gen3dface.backend.commands import keys as keys_cmd
from gen3dface.backend.commands import serve as serve_cmd
from gen3dface.backend.commands import submit as submit_cmd
from gen3dface.backend.images import encode_png
from gen3dface.backend.commands.cli_support import EXIT_OK, EXIT_SERVER, EXIT_USAGE
from gen3dface.backend.service.harness import ServerThread, SyntheticWorkload, expected_result
from gen3dface.protocol import messages as M
from gen3dface.protocol.client import Client, JobError
from gen3dface.protocol.curve import ServerCurve, read_certificate
from gen3dface.protocol.errors import ProtocolError

KEY = b"0123456789abcdef0123456789abcdef-curve"


def photo(seed: int = 0) -> bytes:
    return encode_png(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gen3dface")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in (keys_cmd, serve_cmd, submit_cmd):
        mod.add_parser(sub)
    args = p.parse_args(argv)
    return args.func(args)


@pytest.fixture
def studio(tmp_path):
    """A server key folder with clients alice and bob, admin boss, and outsider eve (not
    allowed), made through the `keys` command."""
    d, people = tmp_path / "server", tmp_path / "people"
    assert cli(["keys", "init", "--dir", str(d)]) == EXIT_OK
    for name, extra in (("alice", ["--allow"]), ("bob", ["--allow"]),
                        ("boss", ["--allow", "--admin"]), ("eve", [])):
        assert cli(["keys", "client", name, "--out", str(people), "--dir", str(d), *extra]) == EXIT_OK
    return d, people


@pytest.fixture
def server(studio, tmp_path):
    d, _ = studio
    w = SyntheticWorkload(steps=10, step_s=0.002, result_bytes=100_000)
    with ServerThread(w, key=KEY, curve=ServerCurve.load(d), state_dir=tmp_path / "state",
                      heartbeat_s=0.2, client_timeout_s=5) as st:
        yield st


def client(server, studio, who: str, **kw) -> Client:
    d, people = studio
    return Client(server.endpoint, key=KEY, server_public_key=str(d / "server.key"),
                  client_key_file=str(people / f"{who}.key_secret"), **kw)


def test_keys_command_writes_owner_only_secrets_and_lists_identities(studio, capsys):
    d, people = studio
    for secret in (d / "server.key_secret", people / "alice.key_secret", d / "signing.key"):
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600, secret
    pub, sec = read_certificate(people / "alice.key_secret")
    assert sec is not None and read_certificate(d / "clients" / "alice.key") == (pub, None)
    assert read_certificate(d / "admins" / "boss.key")[1] is None
    capsys.readouterr()
    assert cli(["keys", "list", "--dir", str(d)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "alice" in out and "bob" in out and "boss" in out and "eve" not in out
    assert cli(["keys", "allow", str(people / "alice.key"), "--name", "again", "--dir", str(d)]) \
        == EXIT_USAGE                                   # one key, one name
    assert cli(["keys", "init", "--dir", str(d)]) == EXIT_USAGE    # never overwritten silently


def test_curve_round_trip_with_hmac_on_top(server, studio):
    with client(server, studio, "alice") as c:
        caps = c.wait_connected(5)
        assert caps["curve"] is True and caps["admin"] is False
        r = c.run_job(photo(1), deadline_s=30)
        assert r.glb == expected_result(photo(1), 100_000)
    job = server.server.store.get(r.job_id)
    assert job.owner == read_certificate(studio[1] / "alice.key")[0].decode()


def test_a_key_not_on_the_allow_list_is_refused(server, studio):
    with client(server, studio, "eve") as c:
        t0 = time.monotonic()
        with pytest.raises(JobError) as e:
            c.wait_connected(5)
        assert e.value.code == "AUTH" and "allow-list" in e.value.message
        assert time.monotonic() - t0 < 3
    assert server.server.counters["received"] == 0       # nothing reached the socket loop


def test_plain_client_and_wrong_server_key_are_refused_with_a_reason(server, studio):
    with Client(server.endpoint, key=KEY) as c:          # no CURVE at all
        with pytest.raises(JobError) as e:
            c.wait_connected(3)
        assert e.value.code == "AUTH" and "CURVE" in e.value.message
    d, people = studio
    with Client(server.endpoint, key=KEY, server_public_key=str(people / "bob.key"),
                client_key_file=str(people / "alice.key_secret")) as c:
        with pytest.raises(JobError) as e:
            c.wait_connected(3)
        assert e.value.code == "AUTH" and "server's public key" in e.value.message
    assert server.server.counters["received"] == 0


def test_jobs_belong_to_their_identity_and_an_admin_sees_all(server, studio):
    with client(server, studio, "alice") as alice, client(server, studio, "bob") as bob, \
            client(server, studio, "boss") as boss:
        r = alice.run_job(photo(2), idempotency_key="shot-010", deadline_s=30)
        assert alice.status(r.job_id)["state"] == "done"
        for request in ("status", "cancel", "fetch_result"):
            with pytest.raises(JobError) as e:
                bob.request(M.job_request(request, r.job_id, bob.session))
            assert e.value.code == "NOT_FOUND", request
        h = bob.fetch_result(r.job_id)                    # the client library's way
        while not h.done:
            bob.poll(0.05)
        assert h.state == "failed" and h.error.code == "NOT_FOUND"
        mine = bob.run_job(photo(3), idempotency_key="shot-010", deadline_s=30)   # own key space
        assert mine.job_id != r.job_id and mine.glb == expected_result(photo(3), 100_000)
        assert boss.wait_connected(5)["admin"] is True
        assert boss.status(r.job_id)["state"] == "done"   # the admin sees every job
        got = boss.fetch_result(r.job_id)
        while not got.done:
            boss.poll(0.05)
        assert got.glb == expected_result(photo(2), 100_000)


def test_an_admin_may_cancel_anyones_job_and_another_client_may_not(server, studio):
    with client(server, studio, "alice") as alice, client(server, studio, "bob") as bob, \
            client(server, studio, "boss") as boss:
        h = alice.submit(photo(4), options={"steps": 2000, "step_s": 0.01})
        while h.job_id is None:
            alice.poll(0.05)
        with pytest.raises(JobError) as e:
            bob.request(M.job_request("cancel", h.job_id, bob.session))
        assert e.value.code == "NOT_FOUND"
        boss.request(M.job_request("cancel", h.job_id, boss.session))
        end = time.monotonic() + 10
        while not h.done and time.monotonic() < end:
            alice.poll(0.05)
        assert h.state == "cancelled"


def test_a_borrowed_session_does_not_take_another_identitys_events(server, studio):
    with client(server, studio, "alice") as alice, client(server, studio, "bob") as bob:
        h = alice.submit(photo(5), options={"steps": 40, "step_s": 0.01})
        alice.wait_connected(5)
        bob.wait_connected(5)
        bob.session = alice.session                      # bob claims alice's session id
        bob.request(M.ping(session=alice.session))
        seen_by_bob = []
        end = time.monotonic() + 20
        while not h.done and time.monotonic() < end:
            alice.poll(0.02)
            seen_by_bob += [ev for ev in bob.poll(0) if ev.kind in ("progress", "result")]
        assert h.state == "done" and h.glb == expected_result(photo(5), 100_000)
        assert not seen_by_bob


def test_revoking_a_key_refuses_its_next_connection_without_a_restart(server, studio, capsys):
    d, _ = studio
    with client(server, studio, "bob") as c:
        c.wait_connected(5)
    assert cli(["keys", "revoke", "bob", "--dir", str(d)]) == EXIT_OK
    with client(server, studio, "bob") as c:
        with pytest.raises(JobError) as e:
            c.wait_connected(3)
        assert e.value.code == "AUTH"


def test_ownership_survives_a_restart(studio, tmp_path):
    d, _ = studio
    w = SyntheticWorkload(steps=2, step_s=0.0, result_bytes=1000)
    for round_ in range(2):
        with ServerThread(w, key=KEY, curve=ServerCurve.load(d), state_dir=tmp_path / "s") as st:
            with client(st, studio, "alice") as alice, client(st, studio, "bob") as bob:
                if round_ == 0:
                    job_id = alice.run_job(photo(6), deadline_s=30).job_id
                with pytest.raises(JobError) as e:
                    bob.status(job_id)
                assert e.value.code == "NOT_FOUND"
                assert alice.status(job_id)["state"] == "done"


def test_client_refuses_half_a_curve_configuration_and_bad_key_files(studio, tmp_path):
    d, people = studio
    with pytest.raises(ValueError, match="both"):
        Client("tcp://127.0.0.1:1", key=KEY, server_public_key=str(d / "server.key"))
    loose = tmp_path / "loose.key_secret"
    loose.write_bytes((people / "alice.key_secret").read_bytes())
    loose.chmod(0o644)
    with pytest.raises(ProtocolError, match="chmod 600"):
        Client("tcp://127.0.0.1:1", key=KEY, server_public_key=str(d / "server.key"),
               client_key_file=str(loose))
    with pytest.raises(ProtocolError, match="only a public key"):
        Client("tcp://127.0.0.1:1", key=KEY, server_public_key=str(d / "server.key"),
               client_key_file=str(d / "server.key"))


def test_serve_puts_curve_on_every_non_loopback_bind(tmp_path, capsys):
    key = tmp_path / "k"
    key.write_bytes(KEY)
    key.chmod(0o600)
    empty = tmp_path / "nothing"
    assert cli(["serve", "--bind", "tcp://0.0.0.0:0", "--key-file", str(key), "--ephemeral",
                "--curve-dir", str(empty)]) == EXIT_USAGE
    assert "keys init" in capsys.readouterr().err
    assert cli(["serve", "--bind", "tcp://0.0.0.0:0", "--key-file", str(key), "--ephemeral",
                "--no-curve"]) == EXIT_USAGE
    assert "--allow-plaintext-remote" in capsys.readouterr().err
    assert serve_cmd.uses_curve(argparse.Namespace(bind="tcp://10.1.2.3:5555", curve=None,
                                                   curve_dir=None))
    assert not serve_cmd.uses_curve(argparse.Namespace(bind="tcp://127.0.0.1:5555", curve=None,
                                                       curve_dir=None))


def test_submit_command_over_curve(server, studio, tmp_path, capsys):
    d, people = studio
    key = tmp_path / "k"
    key.write_bytes(KEY)
    key.chmod(0o600)
    img = tmp_path / "face.png"
    img.write_bytes(photo(7))
    base = ["submit", str(img), "--server", server.endpoint, "--key-file", str(key),
            "--timeout", "30", "--give-up-disconnected", "5"]
    assert cli(base + ["-o", str(tmp_path / "a.glb"), "--server-key", str(d / "server.key"),
                       "--client-key", str(people / "alice.key_secret")]) == EXIT_OK
    assert (tmp_path / "a.glb").read_bytes() == expected_result(photo(7), 100_000)
    assert cli(base + ["-o", str(tmp_path / "e.glb"), "--server-key", str(d / "server.key"),
                       "--client-key", str(people / "eve.key_secret")]) == EXIT_SERVER
    assert "allow-list" in capsys.readouterr().err
    assert cli(base + ["-o", str(tmp_path / "x.glb"), "--server-key", str(d / "server.key")]) \
        == EXIT_USAGE


class Relay:
    """A TCP relay that records every byte between a client and the server (a network tap)."""

    def __init__(self, target_port: int):
        import socket
        import threading

        self.target = target_port
        self.seen = bytearray()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading

        while True:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target))
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.close()
                except OSError:
                    pass

    def close(self):
        self.lsock.close()


@pytest.mark.parametrize("use_curve", [True, False])
def test_a_network_tap_sees_nothing_readable_with_curve(studio, use_curve):
    d, _ = studio
    w = SyntheticWorkload(steps=3, step_s=0.0, result_bytes=20_000)
    cfg = dict(key=KEY, curve=ServerCurve.load(d)) if use_curve else dict(key=KEY)
    with ServerThread(w, **cfg) as st:
        relay = Relay(int(st.endpoint.rsplit(":", 1)[1]))
        img = photo(8)
        kw = {}
        if use_curve:
            kw = dict(server_public_key=str(d / "server.key"),
                      client_key_file=str(studio[1] / "alice.key_secret"))
        with Client(f"tcp://127.0.0.1:{relay.port}", key=KEY, **kw) as c:
            r = c.run_job(img, idempotency_key="tap-test", name="secret-name.png", deadline_s=30)
        relay.close()
    wire = bytes(relay.seen)
    readable = [x for x in (img[100:140], r.glb[5000:5040], b"tap-test", b"secret-name",
                            b"gen3dface", b"idempotency_key") if x in wire]
    if use_curve:
        assert len(wire) > 20_000 and b"CURVE" in wire[:64] and readable == []
    else:
        assert len(readable) == 6                       # without CURVE all of it is in clear


def test_blender_addon_worker_connects_over_curve(server, studio):
    """The add-on's core (no bpy) builds its client from ConnectionSettings: with the server's
    public key and the artist's key file it runs a job; with half of them it refuses at once."""
    from gen3dface.blender_addon.core import worker
    from gen3dface.blender_addon.core.settings import ConnectionSettings, SettingsError

    d, people = studio
    key_file = studio[0] / "k"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    conn = ConnectionSettings(server.endpoint, str(key_file), 3.0, 30.0,
                              str(d / "server.key"), str(people / "alice.key_secret"))
    ok, lines = worker.fetch_capabilities(conn)
    assert ok and any("encrypted (CURVE)" in line for line in lines), lines
    out = worker.run_job(conn, worker.JobRequest(photo(9), "image/png", "p.png", None, {}))
    assert out.glb == expected_result(photo(9), 100_000)
    ok, lines = worker.fetch_capabilities(ConnectionSettings(
        server.endpoint, str(key_file), 3.0, 30.0, str(d / "server.key"),
        str(people / "eve.key_secret")))
    assert not ok and "allow-list" in " ".join(lines)
    with pytest.raises(SettingsError, match="both"):
        ConnectionSettings(server.endpoint, str(key_file), 3.0, 30.0, str(d / "server.key"), "")


def test_a_key_file_path_that_looks_like_a_z85_key_is_read_as_a_file(studio):
    """A 40-character path of Z85 characters (such as /tmp/tmpabcdefgh/curve-server/server.key)
    was once taken for a key literal: every handshake then failed as 'cryptographic'."""
    import shutil
    import uuid

    from gen3dface.protocol.curve import is_z85_key, load_public_key

    d, _ = studio
    real = read_certificate(d / "server.key")[0]
    folder = f"/tmp/{uuid.uuid4().hex[:24]}"          # /tmp/<24>/server.key: 40 characters
    os.mkdir(folder)
    try:
        path = f"{folder}/server.key"
        shutil.copy(d / "server.key", path)
        assert len(path) == 40 and is_z85_key(path)
        assert load_public_key(path) == real
        assert load_public_key(real.decode()) == real        # a pasted key still works
    finally:
        shutil.rmtree(folder)
