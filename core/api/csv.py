"""CSV export of API results: ``?format=csv`` or ``Accept: text/csv`` on the metrics routes."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import Header, Query
from fastapi.responses import Response
from pydantic import BaseModel

CSV_MEDIA_TYPE = "text/csv"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
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


def _cell(value: Any) -> Any:
    """None as an empty field; text a spreadsheet would run as a formula (a campaign named
    ``=HYPERLINK(...)``) gets a leading apostrophe. Numbers, negative ones included, stay as they are."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        try:
            Decimal(value)
        except InvalidOperation:
            return "'" + value
    return value


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header line and one line per row (see :func:`_cell` for how fields are written)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
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
