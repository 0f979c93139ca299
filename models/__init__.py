"""Bundle tooling: export scripts, head training and the reference preprocessing.

Modules here may import torch (installed by the ``export`` extra). The serving package ``app``
never imports anything from ``models``.
"""
