"""gRPC against HTTP: the same classification over both protocols, side by side."""
