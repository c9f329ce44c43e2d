"""The API's errors: each carries its HTTP status and the contract's snake_case code."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.fields}}


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Gone(ApiError):
    status = 410


class Unprocessable(ApiError):
    status = 422


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class ServiceUnavailable(ApiError):
    """A backing store is down: the only 5xx besides payment_error that the contract allows."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str = "A backing service is unavailable; retry shortly.") -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class PaymentError(ApiError):
    status = 502
    code = "payment_error"
