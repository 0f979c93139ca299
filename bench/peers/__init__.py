"""Peer servers: the same bundle, preprocessing and pipeline behind other serving frameworks.

Each module runs in its framework's own venv (bench/.venvs/<name>) with PYTHONPATH set to the
repository root, and imports only FusionServe's torch-free modules (app.engine and below).
"""
