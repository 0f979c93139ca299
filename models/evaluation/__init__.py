"""Scoring a bundle on a labelled dataset (``fusionserve evaluate``): classification and
calibration metrics."""
