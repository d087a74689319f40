"""lth: lottery-ticket search for MobileNetV2, configured by Hydra and tracked in MLflow."""

__version__ = "0.1.0"
