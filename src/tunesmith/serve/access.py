"""Who may do what on the server: one rule for the API, `/admin` and the web pages, and a cross-site check.

- **Inference keys** (`serve.api_key_sha256`, $TUNESMITH_API_KEYS) call the API and read the pages.
- **Admin keys** (`serve.admin_key_sha256`, $TUNESMITH_ADMIN_KEYS) also change what production serves:
  `/admin/*` and the pages' promote and rollback. With no admin key configured, only a caller on this
  machine may, and only while no inference key is configured either (a key-less server on localhost is
  one person's); with inference keys and no admin key, nobody may.
- **No cross-site writes.** A browser sends a form or a multipart upload to any server without asking
  (a CORS "simple request"), carrying no key but reaching a key-less localhost server; so a request that
  changes anything (not GET, HEAD or OPTIONS) is refused when the browser says it comes from another
  site: `Sec-Fetch-Site: cross-site`, or an `Origin` (else `Referer`) that is not this server. Clients
  that are not browsers send neither and are judged by their key alone.
- Every response forbids framing (clickjacking of the confirm page) and MIME sniffing.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "::1", "localhost")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def matches(digest: str, allowed: set[str]) -> bool:
    return bool(digest) and any(hmac.compare_digest(digest, k) for k in allowed)


def is_loopback(request: Any) -> bool:
    return request.client is not None and request.client.host in LOOPBACK


def is_admin(request: Any, digest: str, keys: set[str], admins: set[str]) -> bool:
    """May this caller change production? (the module's rule)"""
    if admins:
        return matches(digest, admins)
    return not keys and is_loopback(request)


def refusal(request: Any, keys: set[str], admins: set[str]) -> Any:
    """None when the caller may go on (the rule above), else the answer that refuses it. Sets
    `request.state.key_digest` (the caller's key, for per-organisation models) and `is_admin`."""
    from fastapi.responses import JSONResponse, RedirectResponse

    from tunesmith.serve.guard import error_body
    from tunesmith.serve.keys import hash_key

    request.state.key_digest = None
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    page = request.url.path.startswith("/ui")
    if page and not given:
        given = request.cookies.get("tunesmith_key", "")  # the web pages: set by /ui/login
    digest = hash_key(given) if given else ""
    request.state.is_admin = is_admin(request, digest, keys, admins)
    if cross_site(request):
        return JSONResponse(
            error_body(
                "a request from another site's page is refused; send it from this "
                "server's own pages or from a client that is not a browser",
                "invalid_request_error",
                code="cross_site_request",
            ),
            status_code=403,
        )
    if request.url.path.startswith("/admin"):
        if not request.state.is_admin:
            return JSONResponse(
                error_body(
                    "/admin needs an admin key (serve.admin_key_sha256), not an inference key",
                    "invalid_request_error",
                    code="admin_key_required",
                ),
                status_code=403,
            )
        return None
    if keys and request.url.path != "/health" and request.url.path != "/ui/login":
        if not matches(digest, keys | admins):
            if page:
                return RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303)
            return JSONResponse(
                error_body(
                    "invalid or missing API key (Authorization: Bearer ...)",
                    "invalid_request_error",
                    code="invalid_api_key",
                ),
                status_code=401,
            )
        request.state.key_digest = digest
    return None


def cross_site(request: Any) -> bool:
    """A state-changing request that a browser sent from another site's page."""
    if request.method in SAFE_METHODS:
        return False
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return True
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False  # not a browser (curl, the openai client): its key decides
    if source == "null":  # a sandboxed frame or a file:// page
        return True
    return _origin(source) != _origin(f"{request.url.scheme}://{request.headers.get('host', '')}")


def _origin(url: str) -> tuple[str | None, int | None]:
    """(host, port) of a URL, the port filled in from its scheme."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is not a number
        return parts.hostname, -1
    return parts.hostname, port or {"https": 443, "http": 80}.get(parts.scheme)
