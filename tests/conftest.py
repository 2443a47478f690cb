"""Shared fixtures.

Test tiers (see README, "Tests"): pure (no torch, no bpy), backend (torch, tiny real configs),
blender (bpy wheel, headless; marked `blender`), gpu (opt-in with --device cuda; marked `gpu`).

Real data beside the project (never committed) is found through GEN3DFACE_TEST_DATA, which
defaults to ../shared/data next to the repository root.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# The Pythons whose `bpy` the Blender tests drive (each bpy scenario runs in a subprocess of
# one of them; servers and builds run here): this one (bpy 4.5 LTS wheel), plus Blender 4.2 LTS
# when a bpy 4.2 environment exists (.venv-bpy42, made by scripts/setup_bpy42.sh, which CI
# runs) or GEN3DFACE_BLENDER42_PYTHON names one. Every `blender_python` test runs on each.
def _blender_pythons() -> list[tuple[str, str]]:
    out = [("bpy-default", sys.executable)]
    other = os.environ.get("GEN3DFACE_BLENDER42_PYTHON") or REPO_ROOT / ".venv-bpy42" / "bin" / "python"
    if Path(other).is_file():
        out.append(("bpy-4.2", str(other)))
    return out


BLENDER_PYTHONS = _blender_pythons()


@pytest.fixture(params=[p for _, p in BLENDER_PYTHONS], ids=[i for i, _ in BLENDER_PYTHONS])
def blender_python(request) -> str:
    return request.param


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for backend tests (cpu, cuda)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--device") == "cpu":
        skip = pytest.mark.skip(reason="GPU test: run with --device cuda on a GPU host")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def device(request) -> str:
    return request.config.getoption("--device")


def shared_data_dir() -> Path:
    return Path(os.environ.get("GEN3DFACE_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data folder not found at {d} (set GEN3DFACE_TEST_DATA)")
    return d


@pytest.fixture(scope="session")
def faces_dir(data_dir) -> Path:
    return data_dir / "faces"


@pytest.fixture(scope="session")
def ict_npz(data_dir) -> Path:
    p = data_dir / "ict_facekit" / "ict_facekit_v1.npz"
    if not p.is_file():
        pytest.skip(f"ICT-FaceKit archive not found at {p}")
    return p


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny torch models run far faster on one thread on the small shared CI machine; a
    module opts in with `pytestmark = pytest.mark.usefixtures("torch_one_thread")`."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def ict_model(ict_npz):
    from gen3dface.backend.headmodel.ict import load_ict_npz
    return load_ict_npz(ict_npz)


def run_blender_scenario(fn, *args) -> None:
    """Run one bpy scenario in this (subprocess) interpreter, then exit with its status.

    bpy 4.2 LTS's module build crashes at interpreter exit once any class has been registered
    (a script that registers one trivial Operator shows it; 4.5 does not), so under 4.2 the
    process leaves through os._exit after flushing, and the scenario's own status counts."""
    import traceback

    code = 0
    try:
        fn(*args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    import bpy

    if bpy.app.version < (4, 3, 0):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def gltf_validator_report(glb_path) -> dict:
    """Khronos glTF-Validator's report on a GLB (scripts/validate_gltf.mjs); skips the calling
    test when node or the npm package is missing (`bash scripts/install_gltf_validator.sh`)."""
    import json
    import shutil
    import subprocess

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    roots = [os.environ.get("GLTF_VALIDATOR_DIR"), REPO_ROOT / "tools" / "node", REPO_ROOT / ".gl"]
    if not any(r and (Path(r) / "node_modules" / "gltf-validator").is_dir() for r in roots):
        pytest.skip("gltf-validator is not installed (run `bash scripts/install_gltf_validator.sh`)")
    r = subprocess.run(["node", str(REPO_ROOT / "scripts" / "validate_gltf.mjs"), str(glb_path)],
                       capture_output=True, text=True, timeout=120)
    report = json.loads(r.stdout)
    report["_returncode"] = r.returncode
    return report


@pytest.fixture(scope="session")
def tiny_mvdiff_checkpoint(tmp_path_factory):
    """A tiny random-weight Gen3D-Face checkpoint with 32x32 views, saved once per session.
    Plumbing only: it generates noise."""
    import torch

    from gen3dface.backend.mvdiff import MultiViewDiffusion, MVDiffusionConfig

    cfg = MVDiffusionConfig.tiny()
    cfg.backbone.resolution = 32
    cfg.backbone.unet["sample_size"] = 16
    cfg.backbone.vae["sample_size"] = 32
    cfg.validate()
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gen3dface_tiny")
    MultiViewDiffusion(cfg).save_pretrained(folder)
    return folder

