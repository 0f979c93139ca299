"""The Open Inference Protocol (KServe v2, REST) with Triton's binary tensor data extension:
JSON bodies (``schemas``), tensor framing (``tensors``), request and response bodies
(``codec``) and FusionServe's model on the protocol (``fusion``). No HTTP routing here: the
routes are in ``app.api.v2``."""
