# Image for docker-compose.yml (production); the test suite never needs it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY zkqueue zkqueue
COPY handlers handlers
COPY admin admin
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []
