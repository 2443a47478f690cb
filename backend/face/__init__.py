"""Face analysis: detection, 478 landmarks, aligned crop, foreground mask (mediapipe)."""
from .analysis import FaceAnalysis, FaceAnalysisConfig, FaceAnalyzer

__all__ = ["FaceAnalysis", "FaceAnalysisConfig", "FaceAnalyzer"]
