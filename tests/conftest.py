"""Shared fixtures.

Test tiers (see README, "Tests"): pure (no torch, no bpy), backend (torch, tiny real configs),
blender (bpy wheel, headless; marked `blender`), gpu (opt-in with --device cuda; marked `gpu`).

Real data beside the project (never committed) is found through GEN3DFACE_TEST_DATA, which
defaults to ../shared/data next to the repository root.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def ict_model(ict_npz):
    from gen3dface.backend.headmodel.ict import load_ict_npz
    return load_ict_npz(ict_npz)
