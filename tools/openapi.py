"""Prints the API's OpenAPI document, generated from the functions' resolvers and models.

    python -m tools.openapi > openapi.json      (make openapi; CI runs make openapi-check)

Each function has its own APIGatewayHttpResolver; their schemas are merged in template.yaml's
route order, so the file is the single source's output, never written by hand.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, SecurityScheme

from localstage.lambda_runtime import load_module
from localstage.template import load_template
from tickets.edge.http import ORGANIZER_SCHEME

SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    ORGANIZER_SCHEME: HTTPBearer(description="Organizer and staff calls: Authorization: Bearer <token> "
                                             "(TICKETS_ADMIN_TOKEN on the local stage; the AdminTokenSecretArn "
                                             "secret on AWS). Without it: 401 unauthorized."),
}
TITLE = "Tickets API"
VERSION = "1.0.0"
DESCRIPTION = ("Ticket reservations: the HTTP contract of shared/API.md. Every error is "
               '{"error": {"code", "message", ...}}. Reserve and confirm need an Idempotency-Key header.')


def build_schema() -> dict[str, Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the idempotency client is built at import
    template = load_template()
    merged: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": TITLE, "version": VERSION,
                                                           "description": DESCRIPTION}, "paths": {},
                              "components": {"schemas": {}}}
    for spec in sorted(template.functions.values(), key=lambda s: s.logical_id):
        if not spec.routes:
            continue
        app = load_module(spec.code_uri).app
        schema = app.get_openapi_schema(title=TITLE, version=VERSION, security_schemes=SECURITY_SCHEMES).model_dump(
            mode="json", by_alias=True, exclude_none=True)
        for path, operations in schema.get("paths", {}).items():
            merged["paths"].setdefault(path, {}).update(operations)
        merged["components"]["schemas"].update(schema.get("components", {}).get("schemas", {}))
    merged["paths"] = dict(sorted(merged["paths"].items()))
    merged["components"]["schemas"] = dict(sorted(merged["components"]["schemas"].items()))
    merged["components"]["securitySchemes"] = {
        name: scheme.model_dump(mode="json", by_alias=True, exclude_none=True)
        for name, scheme in SECURITY_SCHEMES.items()}
    return merged


def main() -> None:
    print(json.dumps(build_schema(), indent=2, sort_keys=False))


if __name__ == "__main__":
    main()
