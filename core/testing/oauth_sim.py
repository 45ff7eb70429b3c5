"""What the simulators share for OAuth: the login and consent page, its form, and issued codes.

A simulator serves its platform's authorization URL with :func:`consent_page` (a login form with
the requested permissions as checkboxes and Allow / Deny buttons) and reads the submitted form with
:func:`read_consent`; :class:`CodeBook` issues single-use, expiring authorization codes.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p id="app">{app} wants to:</p>
<form method="post" action="{action}">{hidden}
<p><label>Email <input id="email" name="email" value="user@example.com"></label></p>
<p><label>Password <input id="password" name="password" type="password" value="simulated"></label></p>
<ul>{scopes}</ul>
<button id="allow" name="decision" value="allow" type="submit">Allow</button>
<button id="deny" name="decision" value="deny" type="submit">Deny</button>
</form></body></html>"""


def consent_page(
    *, title: str, app: str, action: str, hidden: Mapping[str, str], scopes: Sequence[str]
) -> HTMLResponse:
    """The platform's login + consent page; each requested permission is a checked checkbox."""
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in hidden.items()
    )
    boxes = "".join(
        f'<li><label><input type="checkbox" name="scope" value="{html.escape(s)}" id="scope-{html.escape(s)}"'
        f" checked> {html.escape(s)}</label></li>"
        for s in scopes
    )
    body = PAGE.format(
        title=html.escape(title),
        app=html.escape(app),
        action=html.escape(action),
        hidden=fields,
        scopes=boxes,
    )
    return HTMLResponse(body)


@dataclass(frozen=True, slots=True)
class Consent:
    """What the user submitted: allowed or not, the permissions left checked, the hidden fields."""

    allowed: bool
    scopes: tuple[str, ...]
    fields: dict[str, str]


async def read_consent(request: Request) -> Consent:
    pairs = parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True)
    fields = {k: v for k, v in pairs if k != "scope"}
    return Consent(fields.get("decision") == "allow", tuple(v for k, v in pairs if k == "scope"), fields)


def redirect_back(redirect_uri: str, params: Mapping[str, str]) -> RedirectResponse:
    """302 to the app's redirect URI with ``params`` added to its query."""
    sep = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{sep}{urlencode(dict(params))}", status_code=302)


@dataclass(slots=True)
class IssuedCode:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    issued_at: datetime
    extra: dict[str, str] = field(default_factory=dict)
    used: bool = False


@dataclass(slots=True)
class CodeBook:
    """Authorization codes: single use, valid ``ttl_s`` on the simulator's clock."""

    ttl_s: float = 600.0
    codes: dict[str, IssuedCode] = field(default_factory=dict)

    def issue(self, code: IssuedCode) -> str:
        value = secrets.token_urlsafe(24)
        self.codes[value] = code
        return value

    def take(self, value: str, now: datetime) -> tuple[IssuedCode | None, str]:
        """The code and ``"ok"``, or None/the code and why not: ``unknown``, ``used`` or ``expired``."""
        code = self.codes.get(value)
        if code is None:
            return None, "unknown"
        if code.used:
            return code, "used"
        if now - code.issued_at > timedelta(seconds=self.ttl_s):
            return code, "expired"
        code.used = True
        return code, "ok"
