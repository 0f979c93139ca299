"""Training a fusion head on a labelled dataset (``fusionserve train-head``) and writing it as a
bundle."""
