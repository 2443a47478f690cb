"""GLB export (hand-written glTF with morph targets) and a small ray-cast renderer."""
