# leadbox: a long-running inbox agent. Build: docker build -t leadbox .
# Run:   docker run --init --stop-timeout 15 -p 8000:8000 --env-file .env \
#          -v leadbox-data:/app/data leadbox
# No secret is baked into this image: they all come from the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Listen outside the container; the config file's default is 127.0.0.1.
    LEADBOX_HTTP__HOST=0.0.0.0

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when the
# dependency list changes, not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The app itself, installed without touching the dependencies resolved above.
COPY README.md ./
COPY agent/ ./agent/
RUN pip install --no-deps . && rm -rf build *.egg-info

# Config and reply templates; compose mounts ./config over this read-only.
COPY config/ ./config/

# A non-root user owning only the data directory (SQLite file, outbox .eml files). The outbox
# folder exists in the image with that owner, so a volume mounted there (compose shares one
# between replicas) starts out owned by the app user, not by root.
RUN groupadd --system --gid 10001 leadbox \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home leadbox \
 && mkdir -p /app/data/outbox \
 && chown -R leadbox:leadbox /app/data
USER leadbox
VOLUME ["/app/data"]

EXPOSE 8000

# /healthz only says the process answers; readiness (/readyz) is for load balancers.
# python, because the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + (os.environ.get('LEADBOX_HTTP__PORT') or '8000') + '/healthz', timeout=4)"]

# SIGTERM starts the drain (intake answers 503, in-flight work finishes or stays
# queued); give the container more than http.shutdown_grace (10 s) to stop.
STOPSIGNAL SIGTERM

ENTRYPOINT ["leadbox"]
CMD ["run"]
