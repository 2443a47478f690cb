"""One GLB for a job's result, by output kind:

  "rigged"   the rigged head only: root nodes "Head", "EyeLeft", "EyeRight", "Teeth" (ARKit's 52
             morph targets + 4 extras, material "HeadSkin"; head_glb.py).
  "surface"  the free-form surface only: root node "Surface" (material "SurfaceSkin", its own
             xatlas atlas; no morph targets; surface_glb.py).
  "both"     the rigged head's root nodes first, then "Surface" as one more ROOT node of the
             same scene (not a child of the head: parenting it would make it follow the head's
             transform and confuse the add-on's per-part handling). Both sit in the head frame,
             metres, so the surface overlaps the rigged head exactly. Blender's glTF importer
             makes a separate, VISIBLE object of each node (glTF 2.0 core has no visibility
             flag); the Surface node carries extras {"gen3dface_role": "free_form_surface"},
             which Blender keeps as a custom property, so the add-on or a script can hide it.

The file's asset.extras record the frame, the output kind and the caller's extras.
"""
from __future__ import annotations

from ...protocol.options import OUTPUT_KINDS
from .gltf import GltfBuilder
from .head_glb import HEAD_FRAME_DOC, ExportConfig, HeadAsset, add_head
from .surface_glb import SURFACE_NODE, SurfaceAsset, add_surface


def output_kind_of(head: HeadAsset | None, surface: SurfaceAsset | None) -> str:
    if head is not None and surface is not None:
        return "both"
    if surface is not None:
        return "surface"
    if head is not None:
        return "rigged"
    raise ValueError("nothing to export: give a rigged head, a surface or both")


def write_result_glb(head: HeadAsset | None = None, surface: SurfaceAsset | None = None,
                     config: ExportConfig | None = None, check=None,
                     extras: dict | None = None) -> bytes:
    """GLB bytes with the rigged head, the free-form surface, or both (see the module
    docstring). `check()` runs between meshes (raise to stop)."""
    kind = output_kind_of(head, surface)
    config = config or ExportConfig()
    check = check or (lambda: None)
    doc_extras = {"frame": HEAD_FRAME_DOC}
    if head is not None:
        doc_extras.update(head.extras)
    doc_extras.update(extras or {})
    doc_extras["output_kind"] = kind
    b = GltfBuilder(extras=doc_extras)
    if head is not None:
        add_head(b, head, config, check)
    if surface is not None:
        add_surface(b, surface, config, check)
    check()
    return b.to_glb()


def glb_mesh_names(head: HeadAsset | None, surface: SurfaceAsset | None,
                   config: ExportConfig | None = None) -> list[str]:
    """The mesh names write_result_glb writes for these assets (for the sidecar)."""
    names: list[str] = []
    if head is not None:
        from .head_glb import _parts

        names += [p.name for p in _parts(head.model, config or ExportConfig())]
    if surface is not None:
        names.append(SURFACE_NODE)
    return names


__all__ = ["OUTPUT_KINDS", "output_kind_of", "write_result_glb",
           "glb_mesh_names", "HeadAsset", "SurfaceAsset", "ExportConfig"]
