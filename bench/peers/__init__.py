"""The peer benchmark (issue 3): FusionServe against the in-process limit and three serving
frameworks, with the same bundle, preprocessing and pipeline behind each.

``peer_benchmark`` runs a session, ``peer_summary`` reduces its raw runs to medians, ratios
and targets, ``benchmarks_doc`` writes docs/benchmarks.md and ``throughput_plot`` its figure;
``systems`` lists the systems under test. The peer servers (``litserve_server``,
``bentoml_service``, ``ray_server``, sharing ``common``) run in their framework's own venv
(bench/.venvs/<name>) with PYTHONPATH set to the repository root, and import only
FusionServe's torch-free modules (app.core.engine and below).
"""
