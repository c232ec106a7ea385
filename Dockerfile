# syntax=docker/dockerfile:1
#
# immich-search: one image for `immich-search sync`, `serve`, `migrate` and the rest of the CLI.
#
#   docker build -t immich-search .                            # CPU (onnxruntime), amd64 or arm64
#   docker build --build-arg VARIANT=cuda -t immich-search:cuda .   # NVIDIA GPU, amd64 only
#
# VARIANT=cpu   onnxruntime from PyPI (manylinux wheels exist for x86_64 and aarch64).
# VARIANT=cuda  onnxruntime replaced by onnxruntime-gpu[cuda,cudnn]==ONNXRUNTIME_GPU_VERSION. The CUDA
#               runtime and cuDNN come as NVIDIA's pip wheels inside the venv, so no nvidia/cuda base
#               image is needed; the host needs the NVIDIA driver and the NVIDIA Container Toolkit
#               (compose: a GPU device reservation, see docker/compose.example.yml). PyPI has
#               onnxruntime-gpu for x86_64 only.
# ONNXRUNTIME_VERSION      pins the CPU onnxruntime; empty = what pip resolves.
# ONNXRUNTIME_GPU_VERSION  1.26.0 = the last onnxruntime-gpu on PyPI built for CUDA 12 + cuDNN 9 (NVIDIA
#               driver >= 525, any GPU CUDA 12 supports). 1.27.0 and later are built for CUDA 13: driver
#               >= 580 and no Maxwell, Pascal or Volta GPUs.
# RK3588 (rknnlite) is an extra layer on top of the arm64 image: see docs/deploy.md.
#
# Build context: the repository root (.dockerignore keeps it to what the wheel needs).
ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=trixie

# ---------------------------------------------------------------------------------------------------
# Build stage: the project's wheel and every dependency as wheels, plus the replacement wheels, so
# that the final stage installs offline from them.
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build

ARG VARIANT=cpu
ARG ONNXRUNTIME_VERSION=
ARG ONNXRUNTIME_GPU_VERSION=1.26.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# pyproject.toml maps sync/, ranking/, alembic/, sql/ and models/ into the package immich_search.
COPY pyproject.toml README.md ./
COPY immich_search/ immich_search/
COPY sync/ sync/
COPY ranking/ ranking/
COPY alembic/ alembic/
COPY sql/ sql/
COPY models/ models/

RUN case "${VARIANT}" in cpu|cuda) ;; *) echo "VARIANT must be cpu or cuda, not '${VARIANT}'" >&2; exit 1 ;; esac \
 && pip wheel --wheel-dir /wheels . ${ONNXRUNTIME_VERSION:+"onnxruntime==${ONNXRUNTIME_VERSION}"}

# Replacements, installed in the final stage after the rest:
#  - opencv-python (required by rapidocr-onnxruntime) links libGL and GLib, which a slim image lacks
#    and which would pull in Mesa and LLVM; opencv-python-headless of the same version is the same
#    cv2 module without the GUI parts.
#  - VARIANT=cuda: onnxruntime-gpu with its cuda and cudnn extras (NVIDIA's CUDA runtime, cuBLAS,
#    cuFFT, cuRAND, NVRTC and cuDNN wheels).
RUN wheel_version() { \
      local f; \
      for f in /wheels/"$1"-[0-9]*.whl; do \
        [[ -e "$f" ]] || return 1; \
        f="${f#/wheels/"$1"-}"; echo "${f%%-*}"; return 0; \
      done; \
    } \
 && mkdir -p /wheels/swap \
 && if cv="$(wheel_version opencv_python)"; then \
      pip download --no-deps --dest /wheels/swap "opencv-python-headless==${cv}"; \
    fi \
 && if [[ "${VARIANT}" == cuda ]]; then \
      pip download --dest /wheels/swap "onnxruntime-gpu[cuda,cudnn]==${ONNXRUNTIME_GPU_VERSION}"; \
    fi

# ---------------------------------------------------------------------------------------------------
# Final stage: a venv installed from the wheels above (bind-mounted, so they never enter a layer).
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}

ARG VARIANT=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/immich-search \
    PATH=/opt/immich-search/bin:${PATH} \
    IMMICH_SEARCH_MODEL_DIR=/var/lib/immich-search/models \
    XDG_DATA_HOME=/var/lib/immich-search \
    XDG_CACHE_HOME=/var/lib/immich-search/cache

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# pip's own requirement check will list rapidocr-onnxruntime as missing opencv-python (and, with
# cuda, onnxruntime): both are provided under another distribution name, which is the point.
# DL3013 (pin pip versions): every install here is --no-index from the wheel set the build stage
# resolved, so the versions are fixed by that set; pinning them again here would duplicate it.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv "${VIRTUAL_ENV}" \
 && pip install --no-index --find-links /wheels immich-search \
 && for whl in /wheels/swap/opencv_python_headless-*.whl; do \
      [[ -e "${whl}" ]] || continue; \
      pip uninstall -y opencv-python \
      && pip install --no-index --no-deps "${whl}"; \
    done \
 && if [[ "${VARIANT}" == cuda ]]; then \
      pip uninstall -y onnxruntime \
      && pip install --no-index --find-links /wheels/swap "onnxruntime-gpu[cuda,cudnn]" \
      && find "${VIRTUAL_ENV}"/lib/python*/site-packages/nvidia -mindepth 2 -maxdepth 2 -type d -name lib \
           > /etc/ld.so.conf.d/immich-search-nvidia.conf \
      && ldconfig; \
    fi \
 && python -c "import cv2, onnxruntime; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())" \
 && immich-search --help > /dev/null \
 && groupadd --gid 1000 immich-search \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/immich-search --shell /usr/sbin/nologin immich-search \
 && install -d -o 1000 -g 1000 /var/lib/immich-search /var/lib/immich-search/models /var/lib/immich-search/cache

# Models ($IMMICH_SEARCH_MODEL_DIR) and platformdirs' XDG data and cache directories live under
# /var/lib/immich-search: mount a volume there to keep downloaded or exported models across updates.
WORKDIR /home/immich-search
USER 1000:1000

LABEL org.opencontainers.image.title="immich-search" \
      org.opencontainers.image.description="Chinese full-text, OCR and Chinese-CLIP search for Immich, inside PostgreSQL" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

# `serve` listens here when started with --port 2284 (as in docker/compose.example.yml).
EXPOSE 2284

# `doctor --quiet` exits 0 when the database is reachable and migrated.
HEALTHCHECK --interval=1m --timeout=30s --start-period=2m --retries=3 \
  CMD ["immich-search", "doctor", "--quiet"]

ENTRYPOINT ["immich-search"]
CMD ["sync", "--watch"]
