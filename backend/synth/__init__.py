"""Synthetic training data: random ICT-FaceKit heads rendered into the gen3dface-multiview
format (ict_heads.py), with prior meshes estimated from the input views (prior_fit.py).
Command line: `python -m gen3dface.backend.synth OUT_DIR --identities 8 ...`."""
