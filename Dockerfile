# One image for every Coditect process; the command picks the service (python -m services.<name>).
FROM python:3.11-slim-bookworm
ARG FDB_VERSION=7.3.43
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
 && curl -fsSL -o /tmp/fdb.deb \
      "https://github.com/apple/foundationdb/releases/download/${FDB_VERSION}/foundationdb-clients_${FDB_VERSION}-1_amd64.deb" \
 && dpkg -i /tmp/fdb.deb && rm /tmp/fdb.deb \
 && apt-get purge -y curl && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir "uv>=0.13,<0.14"
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY contracts ./contracts
COPY shared ./shared
COPY services ./services
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER 65534
CMD ["python", "-m", "services.gateway"]
