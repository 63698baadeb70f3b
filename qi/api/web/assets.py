"""The dashboard's files: every page and static asset, indexed once, served only by name.

Nothing is resolved from the request path: a name not in the index is a 404, so no path can
walk out of the package.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PAGES = HERE / "pages"

TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8"}

#: the pages' Content-Security-Policy: scripts, styles, fetches only from this origin
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@dataclass(frozen=True, slots=True)
class Asset:
    path: Path
    media_type: str
    etag: str


def _index(root: Path) -> dict[str, Asset]:
    out: dict[str, Asset] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "VENDORED.md":
            media = TYPES.get(p.suffix) or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
            digest = hashlib.sha256(p.read_bytes()).hexdigest()[:20]
            out[p.relative_to(root).as_posix()] = Asset(p, media, f'"{digest}"')
    return out


class Assets:
    """The static files and pages, read from the package once at startup."""

    def __init__(self) -> None:
        self.static = _index(STATIC)
        self.pages = {p.stem: Asset(p, TYPES[".html"], "") for p in sorted(PAGES.glob("*.html"))}
