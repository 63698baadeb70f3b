"""The HTTP API (FastAPI): read models, verification, sensors, ingestion; see docs/api.md.

``create_app`` (``qi.api.app``) builds the app from its settings and the sources it serves;
``Platform.api_sources()`` wires the sources, ``qi api`` serves it with uvicorn.
"""
