"""Maps the repository's top-level folders under one import namespace, `gen3dface`.

    protocol/       -> gen3dface.protocol
    backend/        -> gen3dface.backend
    blender_addon/  -> gen3dface.blender_addon

so nothing with a generic name (`protocol`, `backend`) lands in a shared site-packages.
Everything else about the project lives in pyproject.toml.
"""
from setuptools import find_packages, setup

FOLDERS = {"protocol": "gen3dface.protocol", "backend": "gen3dface.backend",
           "blender_addon": "gen3dface.blender_addon"}

packages, package_dir = [], {}
for folder, name in FOLDERS.items():
    for sub in [""] + find_packages(folder):
        packages.append(name + ("." + sub if sub else ""))
        package_dir[packages[-1]] = folder + ("/" + sub.replace(".", "/") if sub else "")

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"": ["*.md", "*.toml", "*.json", "*.txt", "data/*.json"]},
    include_package_data=True,
)
