"""The serving core: routing to bundles, the lifecycle, admission, batching, the runner, the engine
and its pipeline."""
