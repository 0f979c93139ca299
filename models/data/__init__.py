"""Labelled image+text datasets and their embeddings by a bundle's own encoders."""
