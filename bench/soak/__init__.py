"""The soak suite (``soak_benchmark``): a FusionServe process's memory growth under a steady
open-loop load."""
