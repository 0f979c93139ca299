# Local stub: only what models/ uses (see typings/README.md). The package is annotated but
# ships no py.typed marker; this is its own signature.
from pathlib import Path

MODEL_DIR: Path

def get_model_path() -> Path: ...
