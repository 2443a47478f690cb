"""Gen3D-Face wire protocol: the message format both the backend and the Blender add-on speak.

Standard library only (the transport and client modules also use pyzmq), so Blender's own
Python imports it with nothing but the pyzmq wheel. All imports inside this package are
relative: the same code runs as `gen3dface.protocol` and bundled inside the extension zip.
The specification is SPEC.md beside this file.
"""

from .errors import ERROR_CODES, AuthError, ProtocolError
from .envelope import PROTOCOL_VERSION, Codec, Limits, Message
from .signing import Signer, ReplayGuard, generate_key_file, load_key

__all__ = ["ERROR_CODES", "AuthError", "ProtocolError", "PROTOCOL_VERSION", "Codec", "Limits",
           "Message", "Signer", "ReplayGuard", "generate_key_file", "load_key"]
