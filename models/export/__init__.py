"""Writing bundles: ONNX export checks, safe bundle directories, the reference preprocessing."""
