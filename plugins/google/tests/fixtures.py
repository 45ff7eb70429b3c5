"""Read plugins/google/fixtures/: real Google Ads request/response shapes, each naming its public source."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass(frozen=True)
class Fixture:
    """One recorded answer: where it comes from, its HTTP status and body, and what it should map to."""

    name: str
    source: str
    http_status: int
    body: Any
    text: str | None
    maps_to: Any
    meta: dict[str, Any]

    def response(
        self, url: str = "https://googleads.googleapis.com/v26/customers/1/googleAds:search"
    ) -> httpx.Response:
        """The answer as httpx would receive it."""
        request = httpx.Request("POST", url)
        headers = {"request-id": "fixture-request-id"}
        if self.text is not None:
            return httpx.Response(self.http_status, text=self.text, headers=headers, request=request)
        return httpx.Response(self.http_status, json=self.body, headers=headers, request=request)


def load(name: str) -> Fixture:
    path = FIXTURES / name
    if path.suffix == ".txt":
        head, _, text = path.read_text().partition("\n---\n")
        meta = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
        return Fixture(
            name, meta["_source"], int(meta["_http_status"]), None, text.strip(), meta.get("_maps_to"), meta
        )
    data = json.loads(path.read_text())
    return Fixture(
        name,
        data["_source"],
        int(data.get("_http_status", 200)),
        data.get("body"),
        None,
        data.get("_maps_to"),
        data,
    )


def all_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if p.suffix in (".json", ".txt"))
