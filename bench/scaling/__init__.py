"""Sizing a cluster: the shipped HPA simulated on a traffic ramp (docs/scaling.md)."""
