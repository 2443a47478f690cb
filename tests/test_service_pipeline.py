"""The service running the real HeadPipeline (not the harness): a real portrait in, a GLB out."""
from __future__ import annotations

import pytest

from gen3dface.backend.service.harness import RawClient, ServerThread
from gen3dface.protocol import messages


@pytest.mark.slow
def test_serve_the_real_pipeline_on_a_real_portrait():
    skimage_data = pytest.importorskip("skimage.data")
    from gen3dface.backend.images import encode_png
    from gen3dface.backend.service.workload import HeadPipelineWorkload

    photo = encode_png(skimage_data.astronaut())
    with ServerThread(HeadPipelineWorkload(), insecure=True) as st:
        c = RawClient(st.endpoint, None)
        c.send(messages.hello("pytest"))
        caps = c.recv_until(("capabilities",))[-1].content
        assert "offline" in caps["pipeline"]["generators"]
        c.send(messages.submit(photo, "image/png", "astronaut"))
        msgs = c.recv_until(("result", "error"), timeout_s=240)
        c.close()
    assert msgs[-1].msg_type == "result", msgs[-1].content
    stages = {m.content["stage"] for m in msgs if m.msg_type == "progress"}
    assert {"decode", "face", "fit", "export"} <= stages
    glb = msgs[-1].buffers[0]
    assert glb[:4] == b"glTF" and msgs[-1].content["sidecar"]["generator"]
