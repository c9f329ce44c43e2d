"""Prints the API's OpenAPI document, generated from the functions' resolvers and models.

    python -m tools.openapi > openapi.json      (make openapi; CI runs make openapi-check)

Each function has its own APIGatewayHttpResolver; Powertools' OpenAPI merge (OpenAPIMerge, what
`configure_openapi_merge` builds) loads each function of template.yaml that serves routes and merges
their schemas, so the file is the single source's output, never written by hand. The functions are
given by the template rather than found by `configure_openapi_merge`'s discovery, which looks for
`app = APIGatewayHttpResolver(...)` in the source and so finds none of ours (`app = create_app()`),
and would take any resolver in the folder, deployed or not.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.event_handler.openapi import OpenAPIMerge

from localstage.lambda_runtime import ROOT
from localstage.template import load_template

TITLE = "Tickets API"
VERSION = "1.0.0"
DESCRIPTION = ("Ticket reservations: the HTTP contract of shared/API.md. Every error is "
               '{"error": {"code", "message", ...}}. Reserve and confirm need an Idempotency-Key header.')


def build_schema() -> str:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the idempotency client is built at import
    template = load_template()
    merge = OpenAPIMerge(title=TITLE, version=VERSION, description=DESCRIPTION, on_conflict="error")
    for spec in sorted(template.functions.values(), key=lambda s: s.logical_id):
        if spec.routes:
            merge.add_file(ROOT / spec.code_uri / f"{spec.handler.rpartition('.')[0]}.py")
    paths = merge.get_openapi_schema().get("paths", {})
    # The merge only warns about a function it could not load: a route missing here is an error.
    missing = [route.route_key for route in template.routes if route.method.lower() not in paths.get(route.path, {})]
    if missing:
        raise SystemExit(f"tools.openapi: no operation for {', '.join(missing)} (see the warnings above)")
    return merge.get_openapi_json_schema()


def main() -> None:
    print(build_schema())


if __name__ == "__main__":
    main()
