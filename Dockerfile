# regfront's one image. `regfront serve` by default; `regfront sync --once` as a scheduled job
# (ECS task, Cloud Run job, CronJob); the gateway on AWS Lambda with the entry point
# `python -m awslambdaric gateway.lambda_handler.handler`. See docs/deploy.md.
#
#   docker build -t regfront .
#   docker run -p 5000:5000 -e REGFRONT_STORAGE=s3://bucket/mirror?region=eu-west-1 regfront
#
# Configuration: a file named by REGFRONT_CONFIG (mounted), or REGFRONT_* variables. The
# gateway listens on 0.0.0.0:$PORT (5000 here; Cloud Run sets its own) unless --listen,
# REGFRONT_LISTEN or the file's gateway.listen say otherwise.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY gateway ./gateway
COPY sync ./sync
COPY lifecycle ./lifecycle
COPY node ./node
COPY regfront ./regfront
# The same wheel CI's install builds from pyproject.toml, installed with its dependencies (and
# the lambda extra) into a venv without pip, which the final stage copies as it is.
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv --without-pip /opt/regfront \
 && set -- /dist/regfront-*.whl \
 && python -m pip --python /opt/regfront/bin/python install "$1[lambda]"

# The same base as the build stage: the venv's interpreter links resolve to the same python.
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="regfront" \
      org.opencontainers.image.description="OCI pull gateway over object storage, and its sync worker" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric user, so Kubernetes' runAsNonRoot can check it; its home holds the default
# ./regfront-data file store (a real deployment uses a bucket).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/regfront --create-home \
        --shell /usr/sbin/nologin regfront
COPY --from=build /opt/regfront /opt/regfront
ENV PATH=/opt/regfront/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=5000
WORKDIR /var/lib/regfront
USER 10001:10001
EXPOSE 5000
# uvicorn drains in-flight requests on SIGTERM (up to 30 s); exec-form ENTRYPOINT keeps regfront
# PID 1, so the signal reaches it.
STOPSIGNAL SIGTERM
# No curl in slim images: Python's urllib, on the port the gateway chose (REGFRONT_LISTEN, else
# $PORT). With --listen or gateway.listen on another port, override the health check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as u; port = (os.environ.get('REGFRONT_LISTEN') or ':' + os.environ.get('PORT', '5000')).rpartition(':')[2]; scheme = 'https' if os.environ.get('REGFRONT_TLS_CERT') else 'http'; u.urlopen(f'{scheme}://127.0.0.1:{port}/healthz', timeout=4, context=ssl._create_unverified_context())"]
ENTRYPOINT ["regfront"]
CMD ["serve"]
