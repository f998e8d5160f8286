# syntax=docker/dockerfile:1
#
# The sbiserve image. One image runs every role; docker-compose.yml picks the command
# (`sbiserve api` by default, `sbiserve worker` for workers).
#
#   CPU (default):  docker build -t sbiserve .
#   CUDA:           docker build -t sbiserve:cuda \
#                     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
#
# The CUDA wheels of torch carry their own CUDA runtime, so the slim Python base works
# for both; the host needs an NVIDIA driver and the NVIDIA container toolkit. BASE may
# name another Python 3.11+ image (e.g. a mirror of python:3.11-slim).

ARG BASE=python:3.11-slim

# ---- build: a virtual environment with torch and sbiserve[server] ------------------
FROM ${BASE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch first, from the chosen index: an unpinned install would pull the default build.
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY package package
COPY models models
COPY service service
COPY client client
RUN pip install ".[server]"

# ---- runtime: the environment alone, as an unprivileged user -----------------------
FROM ${BASE} AS runtime
RUN groupadd --system --gid 10001 sbiserve \
 && useradd --system --uid 10001 --gid sbiserve --create-home sbiserve \
 && mkdir -p /data \
 && chown sbiserve:sbiserve /data
COPY --from=build /opt/venv /opt/venv
# Configuration is by environment (every SBISERVE_* setting and REDIS_URL).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    SBISERVE_HOST=0.0.0.0 \
    SBISERVE_PORT=8000 \
    SBISERVE_DATA_DIR=/data
USER sbiserve
WORKDIR /home/sbiserve
VOLUME ["/data"]
EXPOSE 8000
# /livez answers while the API process is up (the worker role disables this check).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('SBISERVE_PORT', '8000'), timeout=4)" || exit 1
CMD ["sbiserve", "api"]
