"""Gen3D-Face multi-view diffusion (paper section 3.2): the model, its sampler, checkpoints and
the generator the pipeline calls. See model.py for the architecture and checkpoint layout.

Quality needs trained weights (the training recipe is issue 6); random weights only prove the
machinery.
"""
from .config import (BackboneConfig, CameraEncoderConfig, FrustumConfig, GeometryConfig,
                     MultiViewAttentionConfig, MVDiffusionConfig, VolumeConfig)
from .model import Conditioning, MultiViewDiffusion, ViewCameras, joint_cameras
from .sampling import SamplerConfig, sample_views

__all__ = ["BackboneConfig", "CameraEncoderConfig", "FrustumConfig", "GeometryConfig",
           "MultiViewAttentionConfig", "MVDiffusionConfig", "VolumeConfig", "Conditioning",
           "MultiViewDiffusion", "ViewCameras", "joint_cameras", "SamplerConfig", "sample_views"]
