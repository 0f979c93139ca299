"""The overhead suite: what a server spends per request when the model costs nothing (the
tiny bundle). ``request_overhead``: FusionServe's server CPU per request, this checkout against
a baseline checkout. ``overhead_benchmark``: FusionServe, LitServe, BentoML, Ray Serve and a
raw-ASGI floor (``asgi_floor``) in one run, summarised by ``overhead_summary`` and rendered into
docs/benchmarks.md by ``overhead_doc`` (plot: ``overhead_plot``)."""
