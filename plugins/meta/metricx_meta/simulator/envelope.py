"""Graph API error envelopes the simulator answers with."""

from __future__ import annotations

import secrets


class GraphAPIError(Exception):
    """An error the simulator returns as ``{"error": {...}}`` with an HTTP status."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: int = 400,
        subcode: int | None = None,
        type: str = "OAuthException",
        user_title: str | None = None,
        regain_minutes: int | None = None,
        is_transient: bool | None = None,
        user_msg: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.subcode = subcode
        self.type = type
        self.user_title = user_title
        self.regain_minutes = regain_minutes  # a throttle: the usage headers say when access returns
        self.is_transient = is_transient
        self.user_msg = user_msg

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
            "fbtrace_id": secrets.token_urlsafe(8),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.user_title:
            error["error_user_title"] = self.user_title
        if self.user_msg:
            error["error_user_msg"] = self.user_msg
        if self.is_transient is not None:
            error["is_transient"] = self.is_transient
        return {"error": error}


def invalid_parameter(message: str, subcode: int | None = None) -> GraphAPIError:
    return GraphAPIError(100, f"(#100) {message}", subcode=subcode)


def unknown_object(object_id: str) -> GraphAPIError:
    return GraphAPIError(
        100,
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation.",
        subcode=33,
        type="GraphMethodException",
    )


class RawBody(Exception):
    """Answer with this non-JSON (empty, corrupt or HTML) body instead of an envelope."""

    def __init__(self, content: bytes = b"", status: int = 200) -> None:
        super().__init__("raw body")
        self.content = content
        self.status = status
