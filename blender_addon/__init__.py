"""Gen3D-Face Blender extension (placeholder until the extension lands)."""
