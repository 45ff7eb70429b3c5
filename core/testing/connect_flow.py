"""Drive a connect flow without a browser, for provider tests: start, consent at the simulator, callback.

``consent(url, allow=..., uncheck=...)`` opens a simulator's authorization URL, submits its login and
consent form and returns the redirect it answers (the app's callback URL with ``code`` or ``error``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlencode, urljoin

import httpx

_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_SCOPE = re.compile(r'name="scope" value="([^"]+)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def consent(authorization_url: str, *, allow: bool = True, uncheck: Iterable[str] = ()) -> str:
    """Log in and Allow (or Deny) at the simulator; returns the Location it redirects to."""
    import html

    page = httpx.get(authorization_url, timeout=10)
    page.raise_for_status()
    text = page.text
    fields = [(html.unescape(k), html.unescape(v)) for k, v in _INPUT.findall(text)]
    skip = set(uncheck)
    fields += [("scope", html.unescape(s)) for s in _SCOPE.findall(text) if html.unescape(s) not in skip]
    fields += [("email", "user@example.com"), ("password", "simulated")]
    fields.append(("decision", "allow" if allow else "deny"))
    match = _ACTION.search(text)
    assert match, "the consent page has no form"
    action = urljoin(authorization_url, html.unescape(match.group(1)))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = httpx.post(action, content=urlencode(fields), headers=form, timeout=10)
    assert answer.status_code in (302, 303), answer.text
    return answer.headers["location"]
