"""Index sets of mediapipe's 478-point face mesh (468 mesh points + 10 iris points).

"Left"/"right" are the SUBJECT's (mediapipe's own naming): for a frontal photo the subject's
left eye is on the image's right. Taken from mediapipe's `face_mesh_connections` (copied here
so that code which only needs the indices does not import mediapipe).
"""
from __future__ import annotations

import numpy as np

N_LANDMARKS = 478
N_MESH = 468                      # 0..467: face mesh; 468..477: iris (refine_landmarks=True)

RIGHT_IRIS = np.arange(468, 473)  # 468 = centre of the subject's right iris, then 4 rim points
LEFT_IRIS = np.arange(473, 478)   # 473 = centre of the subject's left iris, then 4 rim points
IRIS = np.arange(468, 478)

# FACEMESH_FACE_OVAL, in order around the face starting at the top of the forehead (10),
# going over the subject's left side (image right for a frontal photo), chin (152), back up.
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379,
                      378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127,
                      162, 21, 54, 103, 67, 109])

# Points used for the canonical crop (FFHQ-style alignment) and for quick pose cues.
RIGHT_EYE_CORNERS = (33, 133)     # outer, inner
LEFT_EYE_CORNERS = (263, 362)     # outer, inner
MOUTH_CORNERS = (61, 291)         # subject's right, left
NOSE_TIP = 1
CHIN = 152

# The lid margins around each eye (FACEMESH_RIGHT_EYE / _LEFT_EYE), in order around the
# opening from the outer corner along the lower lid, back along the upper lid.
RIGHT_EYE_OPENING = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160,
                              161, 246])
LEFT_EYE_OPENING = np.array([263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387,
                             388, 466])
# The inner lip line (FACEMESH_LIPS, inner ring), in order around the mouth opening.
MOUTH_OPENING = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13,
                          82, 81, 80, 191])
