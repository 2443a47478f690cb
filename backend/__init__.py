"""Gen3D-Face backend: face analysis, head-model fitting, multi-view generation,
reconstruction, texturing and export, plus the ZeroMQ service and the `gen3dface` CLI.

Array conventions used throughout the backend (each module that owns images restates them):
- images: numpy HxWx3 uint8 RGB, rows top-to-bottom (RGBA: HxWx4 uint8);
- masks: numpy HxW float32 in [0, 1];
- 3D: metres, in the head frame (+Y up, +Z out of the face, +X the subject's left), which is
  also glTF's frame; cameras in OpenCV convention (x right, y down, z forward), world-to-camera.
  Conversions from/to the wire (Blender) convention live in gen3dface.protocol.cameras only.
"""
