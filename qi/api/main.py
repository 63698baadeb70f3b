"""The app as uvicorn's factory for several worker processes: each process reads the settings at
its own edge (``uvicorn --factory qi.api.main:app_from_env``)."""

from __future__ import annotations


def app_from_env():
    from qi.config import Settings
    from qi.logging import configure_logging
    from qi.platform import Platform

    settings = Settings.from_env()
    configure_logging(settings.log)
    return Platform(settings).api_app()
