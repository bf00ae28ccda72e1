# Production image of Fila's control plane and workers (used by compose.yaml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md piccolo_conf.py ./
COPY fila ./fila
COPY controlplane ./controlplane
COPY workers ./workers
COPY tui ./tui
COPY simulator ./simulator
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["fila"]
