# One image, every entry point: carbon-extender (port 8888), carbon-feed (port 8080), carbon-deferral,
# carbon-rebalancer.
#   docker build -t carbon-aware-scheduler .
#   docker run --rm carbon-aware-scheduler carbon-extender --help
# The base is pinned by version; pin it by digest too in a release pipeline (the digest changes with
# every Debian security rebuild, so it belongs to the pipeline that also tests the image).
# Any Debian-based image with python3 (3.11+) and its venv module works as PYTHON_IMAGE: the tests build
# one from Debian's packages (hack/image/build-base.sh) because they cannot reach Docker Hub.
# No `# syntax=` line: it makes BuildKit fetch a frontend image from Docker Hub. This file builds
# offline with BuildKit and with the legacy builder alike.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel needs: a change to tests or docs does not rebuild this layer.
COPY pyproject.toml README.md ./
COPY carbon_common/ carbon_common/
COPY extender/ extender/
COPY carbon_feed/ carbon_feed/
COPY deferral/ deferral/
COPY rebalancer/ rebalancer/
# `python3`, and pip only from the venv: Debian's system pip refuses to install (PEP 668).
# Runtime dependencies only (no dev or trace extras), installed into a venv the final stage copies.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-compile /wheels/*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall -y pip

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="carbon-aware-scheduler" \
      org.opencontainers.image.description="Carbon-aware kube-scheduler extender and carbon-intensity feed" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can verify it without a name lookup.
RUN groupadd --system --gid 65532 carbon \
    && useradd --system --uid 65532 --gid carbon --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin carbon \
    && mkdir -p /var/lib/carbon-feed /var/run/carbon \
    && chown carbon:carbon /var/lib/carbon-feed /var/run/carbon
COPY --from=builder /opt/venv /opt/venv
USER 65532:65532
EXPOSE 8888 8080
# No HEALTHCHECK: the same image runs two servers on two ports; Kubernetes probes each container
# (and ignores HEALTHCHECK). The chart's probes run `python -c` inside the container.
ENTRYPOINT []
CMD ["carbon-extender"]
