"""The dashboard: web pages, their static assets and the live feed, served by the API app.

``router()`` is included by ``qi.api.app.create_app``. Pages are static HTML shells with small
ES modules that call the JSON API (no build step); the live feed is one Kafka reader per app
process fanned out over server-sent events (``live.py``, docs/decisions/0116); pages send the
user's bearer token from sessionStorage (docs/decisions/0115). Users' guide: docs/dashboard.md.
"""

from qi.api.web.router import router

__all__ = ["router"]
