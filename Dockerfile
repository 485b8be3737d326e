# One container: `hookgate serve` (HTTP server and scheduler in one process).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/hookgate.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY scheduler ./scheduler
COPY clients ./clients
COPY sql ./sql
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /data --create-home hookgate

USER hookgate
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"

# uvicorn re-raises SIGTERM after a clean shutdown: exit status 143 is not a crash.
CMD ["hookgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
