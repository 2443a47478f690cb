"""The paper's data pruning (section 3.2): the Janus filter (janus.py, CLIP zero-shot on back
views) and the identity-consistency filter (identity.py, ArcFace mean pairwise similarity,
top-K identities), with pluggable embedders (embedders.py). Results go to the dataset's
pruning.json (data/format.py: PruningManifest), which the training loader honours.
Command line: `python -m gen3dface.backend.pruning DATASET --clip ID_OR_DIR --arcface F.onnx`."""
