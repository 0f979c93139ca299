"""Bundle tooling: a generic toolkit and the recipes of the shipped bundles.

Toolkit packages by capability: ``data`` (labelled datasets, embedding them), ``training``
(``train-head``), ``evaluation`` (``evaluate``), ``quantization`` (``quantize-bundle``),
``export`` (writing bundles, the reference preprocessing) and ``reporting`` (model cards,
reports, plots). ``recipes/fashion_mnist`` builds the default bundles with them.

Modules here may import torch (installed by the ``export`` extra). The serving package ``app``
never imports anything from ``models``.
"""
