"""Head-model fitting to face landmarks: pose, focal length, identity, expression."""
from .correspondence import LandmarkMapping, load_mapping
from .fitter import FitConfig, FitResult, HeadFitter

__all__ = ["FitConfig", "FitResult", "HeadFitter", "LandmarkMapping", "load_mapping"]
