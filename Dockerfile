# The freshet image: worker, learner and producer (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package needs: a context with .venv or .cache would be large and slow to send.
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY models ./models
COPY producers ./producers
COPY pipelines ./pipelines
RUN pip install . && useradd --create-home --uid 1000 freshet

# Settings for every container; docker-compose.yml adds where the servers are.
ENV FRESHET_SPEC_PATH=/app/pipelines/demo.toml \
    FRESHET_CACHE_DIR=/home/freshet/cache \
    FRESHET_START_SERVICES=0

USER freshet
WORKDIR /home/freshet
CMD ["freshet", "worker"]
