"""A Ray node that dies mid-job (ray.cluster_utils.Cluster: a head without CPUs and two
1-CPU worker nodes on this machine, one raylet each). The node running the job is removed
without grace; the client hears of it, the job runs again on the other node and completes
once. Starts and stops its own cluster and checks that nothing of it is left running."""
from __future__ import annotations

import os
import time

import pytest

ray = pytest.importorskip("ray")

from test_service_ray import _session_processes, _sha, photo, synthetic_backend  # noqa: E402

from gen3dface.backend.service.harness import RawClient, ServerThread, expected_result  # noqa: E402
from gen3dface.protocol import messages  # noqa: E402

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


@pytest.fixture
def three_node_cluster():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    store = 100 << 20
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": store, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1, object_store_memory=store) for _ in range(2)]
    session = os.path.basename(cluster.head_node.get_session_dir_path())
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _session_processes(session):
        time.sleep(0.2)
    assert not _session_processes(session), "processes of the test cluster are still running"


def test_node_dying_mid_job_is_reported_and_the_job_retried_on_the_other_node(three_node_cluster, tmp_path):
    cluster, nodes = three_node_cluster
    completions = tmp_path / "completions.txt"
    backend = synthetic_backend(completions, steps=60, step_s=0.05)
    with ServerThread(backend, queue_size=4) as st:
        pool = st.server.worker
        # the pool is serving once one actor is up; the others finish starting on their own
        # dispatcher threads (on a loaded 2-core machine, seconds later)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(d.info is None for d in pool.dispatchers):
            time.sleep(0.1)
        assert {d.info["node_id"] for d in pool.dispatchers} == {n.node_id for n in nodes}
        c = RawClient(st.endpoint, None)
        c.send(messages.submit(photo(31), "image/png", "node-dies"))
        msgs = c.recv_until(("progress",), timeout_s=30)
        job_id = msgs[0].content["job_id"]
        msgs += c.recv_until(("progress",), timeout_s=30)
        victim = next(d for d in pool.dispatchers if d.current is not None and d.current.job_id == job_id)
        node = next(n for n in nodes if n.node_id == victim.info["node_id"])
        t0 = time.monotonic()
        cluster.remove_node(node, allow_graceful=False)
        got = []
        while not any(m.msg_type == "progress" and "lost" in m.content["message"] for m in got):
            got += c.recv_until(("progress",), timeout_s=20, job_id=job_id)
        report_s = time.monotonic() - t0
        got += c.recv_until(("result", "error"), timeout_s=60, job_id=job_id)
        c.send(messages.hello("pytest"))
        caps = c.recv_until(("capabilities",))[-1].content
        c.close()
    print(f"node loss reported after {report_s:.2f} s")
    lost = next(m for m in got if m.msg_type == "progress" and "lost" in m.content["message"])
    assert f"worker #{victim.index}" in lost.content["message"] and "retrying" in lost.content["message"]
    assert got[-1].msg_type == "result", got[-1].content
    assert got[-1].buffers[0] == expected_result(photo(31), 1 << 16)
    assert completions.read_text().split() == [_sha(photo(31))]
    # the lost slot cannot start again (its node is gone): one live worker is reported
    assert caps["cluster"]["workers"] == 1
    assert caps["cluster"]["devices"][victim.index]["state"] in ("starting", "lost", "failed")
