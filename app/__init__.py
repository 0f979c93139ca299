"""FusionServe: a REST inference microservice for image+text classifiers on ONNX Runtime."""

__version__ = "0.1.0"
