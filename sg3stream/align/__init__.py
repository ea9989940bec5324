"""Face tracking and FFHQ alignment: LandmarkStage (process pool, mediapipe) then AlignStage (thread).

See stages.py for the batch data keys, transforms.py for the generator transform conventions, and
artifacts.py for alignment.npz. Importing this package does not import mediapipe (the workers do, in setup()).
"""
from .artifacts import AlignmentWriter
from .stages import AlignStage, LandmarkStage, default_workers

__all__ = ["AlignStage", "AlignmentWriter", "LandmarkStage", "default_workers"]
