"""Recipes: everything specific to one shipped bundle, built with the generic tools of
``models``."""
