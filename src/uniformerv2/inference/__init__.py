"""Inference and deployment: ``VideoClassifier`` (predict, long-video timelines, features), annotated video
output, ONNX / ``torch.export`` export."""
from .classifier import ClassScore, Failure, Features, Prediction, TimelineEntry, VideoClassifier

__all__ = ["VideoClassifier", "Prediction", "Failure", "Features", "ClassScore", "TimelineEntry"]
