"""CPU renderer (embree ray casting) and synthetic ground-truth heads.

camera.py: PinholeCamera (OpenCV w2c in the head frame + pixel intrinsics), rigs;
mesh.py: TexturedMesh (vertex colours, UV texture or procedural solid texture);
raycast.py: RayCaster / render_views -> RenderedView (rgba, depth, normals, mask, face_id);
procedural.py, synthetic.py: procedural materials and random ICT heads (plain or detailed).
"""
