"""The init phase the race environments share: imported once by the fork server (see environments.py).

Imports the layer and every function's handler, with the environment the tests set (the DynamoDB
endpoint, region, table names), so that each environment forked from it starts initialised. A
handler that fails to import here is imported again, and reports its error, on first invocation.
"""

from __future__ import annotations

import sys

from localstage.lambda_runtime import ROOT, load_handler

for _app in sorted(ROOT.glob("functions/*/app.py")):
    try:
        load_handler(str(_app.parent.relative_to(ROOT)))
    except Exception:
        sys.modules.pop(f"function_{_app.parent.name}_app", None)
