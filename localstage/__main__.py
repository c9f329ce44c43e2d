"""python -m localstage [invoke FUNCTION EVENT_FILE]

With no arguments: runs the local stage (see localstage/stage.py) until Ctrl-C or SIGTERM.
`invoke`: runs one function on one event file, like `sam local invoke` (see localstage/invoke.py).

Environment: PORT (3000), TICKETS_ADMIN_TOKEN (generated when unset), DATABASE_URL (an existing
server instead of the private cluster), LOCAL_STAGE_DIR (state: <repo>/.local),
LOCAL_STAGE_CONCURRENCY (workers per function: 8), LOCAL_STAGE_EXPIRY_INTERVAL (seconds between
scheduled runs, instead of the template's rate), LOCAL_STAGE_LOG_LEVEL (INFO), LOCAL_STAGE_INIT_TIMEOUT
(seconds a function's init may take: 30).
"""

from __future__ import annotations

import sys

from localstage.invoke import invoke
from localstage.stage import main as run_stage


def main(argv: list[str]) -> int:
    if argv and argv[0] == "invoke":
        return invoke(argv[1:])
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    if argv:
        print(f"unknown arguments: {' '.join(argv)}\n{__doc__}", file=sys.stderr)
        return 2
    return run_stage()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
