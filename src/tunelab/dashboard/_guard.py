"""Who may read the dashboard, and what a browser may do with its pages.

A dashboard bound to a network address shows the study to anyone who can reach it, so it then
takes a token: given once as ``?token=...``, after which an HttpOnly, SameSite=Strict cookie
carries it. A token-less dashboard answers only requests addressed to the loopback names, so a web
page elsewhere cannot read it through a DNS name that points at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import secrets
from urllib.parse import quote, unquote

from starlette.datastructures import Headers, QueryParams
from starlette.requests import cookie_parser
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "LOOPBACK_HOSTS", "Guard"]

COOKIE = "tunelab_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

#: Pages load scripts, styles and data from the dashboard alone. Plotly sets inline styles, and
#: its WebGL figures (parallel coordinates) compile shader code with ``new Function``.
_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", _POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class Guard:
    """ASGI middleware: the token (when set) or the loopback host, and the security headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal, new_cookie = self._check(scope)
        if refusal is not None:
            await PlainTextResponse(refusal, status_code=403)(scope, receive, _secured(send, None))
            return
        await self.app(scope, receive, _secured(send, new_cookie))

    def _check(self, scope: Scope) -> tuple[str | None, str | None]:
        """Why the request is refused (or None), and the cookie to set when the token came in the
        query string."""
        headers = Headers(scope=scope)
        if self.token is None:
            if _host_name(headers.get("host", "")) not in LOOPBACK_HOSTS:
                return (
                    f"403: this dashboard answers only at {', '.join(LOOPBACK_HOSTS)}; "
                    "open it by one of those names, or serve it with a token",
                    None,
                )
            return None, None
        given = QueryParams(scope.get("query_string", b"")).get("token")
        if given is not None and _same(given, self.token):
            return None, given
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        if cookie is not None and _same(unquote(cookie), self.token):
            return None, None
        return "403: this dashboard needs its token; open the link it printed (...?token=...)", None


def _host_name(header: str) -> str:
    """The name in a Host header, without its port (``[::1]:8080`` -> ``[::1]``)."""
    name, _, port = header.rpartition(":")
    return (name if name and port.isdigit() and not header.endswith("]") else header).lower()


def _same(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode(), token.encode())


def _secured(send: Send, token: str | None) -> Send:
    """``send`` with the security headers (and the token's cookie) added to the response."""

    async def send_secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), *_HEADERS]
            if token is not None:
                cookie = f"{COOKIE}={quote(token, safe='')}; Path=/; HttpOnly; SameSite=Strict"
                headers.append((b"set-cookie", cookie.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return send_secured
