# Image for QI Stream's services in docker-compose.kafka.yml (production deps only: no local-stack extra).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events events
COPY streams streams
COPY projections projections
COPY connectors connectors
COPY qi qi
COPY schemas schemas
# editable: the schemas/ directory is read from the source tree
RUN pip install --no-cache-dir -e .
USER nobody
CMD ["qi", "--help"]
