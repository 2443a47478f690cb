"""Reconstruction from posed views: visual hull (hull.py), template registration, the fast
path (register.py), the free-form SDF surface (sdf.py, meshing.py, bake_surface.py), the
benchmark metric (metrics.py), the stage's entry point (stage.reconstruct) and the pipeline's
side of it (adapter.py: reconstruct_views, Reconstructed)."""
