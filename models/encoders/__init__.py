"""Bringing your own encoders: checkpoints to a base bundle, with preprocessing parity proven."""
