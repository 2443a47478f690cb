"""The one place the add-on imports the wire protocol from.

Inside the built extension the protocol package is bundled beside this file as
`<extension>/protocol/` (scripts/build_extension.py copies the repository's protocol/ there;
it uses only relative imports, so it works under any parent package). In development the same
code is installed as `gen3dface.protocol`. Every other add-on module imports protocol modules
from here (`from ..wire import cameras`), never directly, so the choice is made once.

The protocol's cameras and options (the job options' vocabulary) modules are pure Python and
loaded eagerly. The transport and client
modules need pyzmq (bundled as a wheel in the extension) and are loaded on first use through
`load(name)`, so the add-on's pure logic imports without pyzmq.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

if (Path(__file__).resolve().parent / "protocol" / "__init__.py").is_file():
    from . import protocol as _protocol     # the built extension: <extension>/protocol/
    SOURCE = "bundled"
else:                                       # development checkout: gen3dface.protocol
    import gen3dface.protocol as _protocol
    SOURCE = "gen3dface"

PACKAGE: str = _protocol.__name__

from importlib import import_module as _im  # noqa: E402

cameras: ModuleType = _im(PACKAGE + ".cameras")
options: ModuleType = _im(PACKAGE + ".options")


def load(name: str) -> ModuleType:
    """A protocol submodule by name ("envelope", "transport", "client", ...)."""
    return importlib.import_module(f"{PACKAGE}.{name}")
