"""Int8 copies of a bundle's encoders with ONNX Runtime's quantisation tools
(``fusionserve quantize-bundle``)."""
