"""Training data: the on-disk multi-view format (format.py), readers that convert FaceScape's
multi-view release and PanoHead-style generated sets into it (facescape.py, panohead.py), prior
meshes estimated from input views (priors.py), and the training loader (dataset.py)."""
