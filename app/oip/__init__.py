"""The Open Inference Protocol (KServe v2) over HTTP, with Triton's binary tensor data
extension: JSON bodies (``schemas``), tensor framing (``tensors``), request and response bodies
(``codec``), FusionServe's model on the protocol (``classifier_model``), the routes
(``http_routes``), the protocol's error bodies (``error_bodies``) and Triton's model repository
extension (``repository_routes``)."""
