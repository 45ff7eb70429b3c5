"""CSV export of API results: ``?format=csv`` or ``Accept: text/csv`` on the metrics routes."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from fastapi import Header, Query
from fastapi.responses import Response
from pydantic import BaseModel

CSV_MEDIA_TYPE = "text/csv"
FormatQuery = Annotated[
    Literal["json", "csv"] | None,
    Query(alias="format", description="csv: the same rows as CSV (also chosen by Accept: text/csv)."),
]
AcceptHeader = Annotated[str | None, Header(alias="Accept", include_in_schema=False)]

#: Documents the CSV alternative of a route in OpenAPI.
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}}
}


def wants_csv(fmt: str | None, accept: str | None) -> bool:
    """True when the caller asked for CSV by ``?format=csv`` or by ``Accept`` (the query wins)."""
    if fmt is not None:
        return fmt == "csv"
    return CSV_MEDIA_TYPE in (accept or "")


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header line and one line per row; None becomes an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def models_csv(models: Sequence[BaseModel], columns: Sequence[str], **constant: Any) -> str:
    """CSV of pydantic models' ``columns`` (JSON-mode values), with ``constant`` columns first."""
    head = list(constant) + list(columns)
    values = list(constant.values())
    return csv_text(head, (values + [m.model_dump(mode="json")[c] for c in columns] for m in models))


def csv_response(body: str, filename: str, **headers: str) -> Response:
    """A CSV download named ``filename``."""
    return Response(
        body,
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', **headers},
    )
