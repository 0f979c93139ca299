"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` on the serving core."""
