"""Add-on preferences: backend address, key file, CURVE keys (a backend on another machine),
timeouts, the local backend, Test connection."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from pathlib import Path

from ..core import settings as core_settings


def is_z85_key(text: str) -> bool:
    """A key pasted as its 40 Z85 characters rather than given as a file."""
    from ..wire import load
    return load("curve").is_z85_key(text)

# The add-on's package: "bl_ext.<repo>.gen3dface" when installed as an extension,
# "gen3dface.blender_addon" in development. This module lives in <package>.blender.
ADDON_PACKAGE = __package__.rpartition(".")[0]


def get(context=None) -> "GEN3DFACE_AP_preferences | None":
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon else None


def _start_local_changed(self, context):
    from . import runtime
    if self.start_local_backend:
        runtime.start_local_backend(self)
    else:
        runtime.stop_local_backend()


class GEN3DFACE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    address: StringProperty(
        name="Backend address", default=core_settings.ConnectionSettings.address,
        description="ZeroMQ address of `gen3dface serve`, e.g. tcp://127.0.0.1:5555 or "
                    "tcp://gpu-box:5555 (a remote address needs Allow Online Access)")
    key_file: StringProperty(
        name="Key file", subtype="FILE_PATH",
        description="The backend's shared key file (owner-only permissions)")
    server_public_key: StringProperty(
        name="Server public key", subtype="FILE_PATH",
        description="For a backend on another machine (encrypted, CURVE): the server's public "
                    "key file server.key from `gen3dface keys init` (or its 40 characters). "
                    "Leave empty for a backend on this machine")
    client_key_file: StringProperty(
        name="Client key file", subtype="FILE_PATH",
        description="Your own key file NAME.key_secret from `gen3dface keys client NAME`; its "
                    "public half must be on the server's allow-list. Keep it private (mode 0600)")
    connect_timeout: FloatProperty(name="Connect timeout (s)", default=4.0, min=0.5, max=120)
    job_timeout: FloatProperty(name="Job timeout (s)", default=600.0, min=5.0, max=86400)

    start_local_backend: BoolProperty(
        name="Start a local backend", default=False, update=_start_local_changed,
        description="Run `gen3dface serve` on this machine (loopback, a fresh key) while "
                    "Blender runs; stopped when Blender quits or the add-on is disabled")
    local_python: StringProperty(
        name="Backend Python", subtype="FILE_PATH",
        description="The python of the environment where gen3dface is installed "
                    "(<venv>/bin/python, Windows: <venv>\\Scripts\\python.exe)")
    local_port: IntProperty(name="Port", default=5555, min=1024, max=65535)
    local_device: StringProperty(name="Device", default="auto",
                                 description="auto, cpu or cuda")

    def connection_settings(self) -> core_settings.ConnectionSettings:
        from . import runtime
        local = runtime.local_backend_connection()
        server_key = client_key = ""
        if local is not None:              # the local backend we started wins (loopback)
            address, key_file = local
        else:
            address, key_file = self.address.strip(), bpy.path.abspath(self.key_file)
            server_key = self.server_public_key.strip()
            if server_key and not is_z85_key(server_key):
                server_key = bpy.path.abspath(server_key)      # a file, maybe //relative
            elif server_key and Path(bpy.path.abspath(server_key)).is_file():
                server_key = bpy.path.abspath(server_key)      # a path that looks like a key
            client_key = bpy.path.abspath(self.client_key_file) if self.client_key_file.strip() else ""
        return core_settings.ConnectionSettings(address, key_file, float(self.connect_timeout),
                                                float(self.job_timeout), server_key, client_key)

    def local_backend_settings(self) -> core_settings.LocalBackendSettings:
        return core_settings.LocalBackendSettings(
            python=bpy.path.abspath(self.local_python), port=int(self.local_port),
            device=self.local_device.strip() or "auto")

    def draw(self, context):
        from . import runtime
        layout = self.layout
        col = layout.column()
        col.use_property_split = True
        local = runtime.local_backend_connection()
        sub = col.column()
        sub.enabled = local is None
        sub.prop(self, "address")
        sub.prop(self, "key_file")
        sub.prop(self, "server_public_key")
        sub.prop(self, "client_key_file")
        col.prop(self, "connect_timeout")
        col.prop(self, "job_timeout")
        if not bpy.app.online_access:
            col.label(text="Online access is off: only a backend on this machine (127.0.0.1) "
                      "can be used", icon="INFO")

        box = layout.box()
        box.prop(self, "start_local_backend")
        sub = box.column()
        sub.use_property_split = True
        sub.enabled = not self.start_local_backend
        sub.prop(self, "local_python")
        sub.prop(self, "local_port")
        sub.prop(self, "local_device")
        status = runtime.local_backend_status()
        if status:
            box.label(text=status, icon="INFO")

        row = layout.row()
        row.operator("gen3dface.test_connection", icon="PLUGIN")
        for line in runtime.connection_report():
            layout.label(text=line)


classes = (GEN3DFACE_AP_preferences,)
