# Local stub: only the scikit-learn APIs that models/ uses (see typings/README.md).
