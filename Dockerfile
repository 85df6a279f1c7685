# syntax=docker/dockerfile:1
# healthmed's image. Stage "build" installs the locked runtime dependencies (hashes required,
# wheels only) and the project into a virtualenv; stage "runtime" is a slim Python holding that
# virtualenv alone: no compiler, no uv, no dev tools (ruff, mypy, moto, hypothesis, pytest).
# Lint: hadolint Dockerfile. What it installs is proven outside Docker by
# tests/infra/test_runtime_install.py, which runs docker/install-runtime.sh the same way.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY requirements.lock pyproject.toml ./
COPY docker/install-runtime.sh docker/
COPY engine engine
COPY gateway gateway
RUN PYTHON=/usr/local/bin/python3 sh docker/install-runtime.sh /opt/healthmed /src

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 healthmed \
    && useradd --system --uid 10001 --gid healthmed --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin healthmed \
    && install -d -o healthmed -g healthmed -m 0700 /var/lib/healthmed
COPY --from=build /opt/healthmed /opt/healthmed
ENV PATH=/opt/healthmed/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHMED_HOST=0.0.0.0 \
    HEALTHMED_PORT=8000 \
    HEALTHMED_DATA_DIR=/var/lib/healthmed
WORKDIR /var/lib/healthmed
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('HEALTHMED_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["healthmed"]
CMD ["serve"]
