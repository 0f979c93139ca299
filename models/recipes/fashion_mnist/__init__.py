"""The default bundles: EfficientNet-Lite0 + all-MiniLM-L6-v2 encoders and a fusion head trained on
Fashion-MNIST with generated titles (``models/default``, ``models/default-int8``,
``models/samples``)."""
