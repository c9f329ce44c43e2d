"""What a cold start costs each function: importing its built handler module, as Lambda's init does.

    make bench-cold                   # builds first when the sources are newer than .aws-sam/build
    BENCH_RUNS=9 make bench-cold
    SAM_BUILD_DIR=/elsewhere/.aws-sam/build make bench-cold    # another build, as it is (e.g. a commit's)

Each function of template.yaml, as `make build` (sam build) leaves it in .aws-sam/build, is
imported in a fresh process of the runtime's interpreter (tools/lambda_python.sh), with only its
folder and the layer's python/ folder on the path (-I -S: no site-packages, no PYTHONPATH) and -B,
so nothing is written into the artifact: Lambda's /var/task and /opt are read-only, so a module
not shipped as bytecode is compiled again on every cold start. Two environments:

  import   tracing disabled (POWERTOOLS_TRACE_DISABLED=true, as sam local and the tests run it)
  traced   LAMBDA_TASK_ROOT set and tracing on, as on AWS with `Tracing: Active`: the X-Ray SDK
           (and the botocore its sampler uses) are imported at init

  first    import, then the first invocation with the function's sample event of events/
           (reserve.json, create_event.json, ...), against a throwaway PostgreSQL and moto's
           DynamoDB started by the benchmark (localstage.LocalBackends): a cold start is the
           init and the first request, so what is moved out of the import into the first
           request shows here. Each run gets its own Idempotency-Key and device id, so a reserve
           does the work rather than replaying a stored answer. BENCH_FIRST_REQUEST=0 skips it.

The import is timed inside the process, around `import app`: the interpreter's own start is
excluded. Two clocks: CPU time (time.process_time) and wall time (time.perf_counter). On a
machine others are loading, the wall time measures them as much as the import; the CPU time
hardly moves, so the budget (BUDGET_MS) is read on the CPU median, and both are printed.
`process` is the whole child (interpreter start, import, exit) as the parent saw it.
References, interleaved with the functions in the same run: `python -c pass` (the bare
interpreter start, whole process), `import json` and `import asyncio` (in-process), so that a
figure can be read as a ratio on another machine or another day. Writes
benchmarks/results/bench-cold.json. The figures are this machine's, not AWS's.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from localstage.template import _CloudFormationLoader

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = Path(os.environ.get("SAM_BUILD_DIR", ROOT / ".aws-sam" / "build")).resolve()
RESULTS = Path(__file__).parent / "results" / "bench-cold.json"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
BUDGET_MS = 350.0

# The child: the path as Lambda sets it, the handler module imported, (wall ms, CPU ms, the AWS SDK
# and X-Ray modules it loaded). Powertools imports the botocore package itself (its __init__, for
# its user agent); what counts is a submodule of it (tests/build checks the same).
IMPORT_APP = """
import sys, time
wall, cpu = time.perf_counter(), time.process_time()
sys.path[:0] = sys.argv[1:3]
import app
wall, cpu = (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000
sdk = sorted({m.partition(".")[0] for m in sys.modules
              if m.partition(".")[0] in ("boto3", "aws_xray_sdk") or m.startswith("botocore.")})
print(repr((wall, cpu, sdk)))
"""
IMPORT_MODULE = """
import sys, time
wall, cpu = time.perf_counter(), time.process_time()
__import__(sys.argv[1])
print(repr(((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000, [])))
"""
# The child of the `first` rows: the import, then one invocation of the sample event (argv[3]), each
# timed; the event gets a key and a device of its own (argv[4]), as a new buyer's request would.
IMPORT_AND_INVOKE = """
import json, sys, time
from types import SimpleNamespace
wall, cpu = time.perf_counter(), time.process_time()
sys.path[:0] = sys.argv[1:3]
import app
import_wall, import_cpu = (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000
event = json.load(open(sys.argv[3]))
if isinstance(event.get("headers"), dict):
    for name in ("idempotency-key", "x-device-id"):
        if name in event["headers"]:
            event["headers"][name] = "bench-" + sys.argv[4]
context = SimpleNamespace(function_name="bench", memory_limit_in_mb=512, aws_request_id="bench-" + sys.argv[4],
                          invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:bench",
                          get_remaining_time_in_millis=lambda: 30000)
wall, cpu = time.perf_counter(), time.process_time()
result = app.lambda_handler(event, context)
first_wall, first_cpu = (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000
status = result.get("statusCode", 200) if isinstance(result, dict) else 200
print(repr((import_wall, import_cpu, first_wall, first_cpu, status)))
"""
# Each function's sample event for the `first` rows (DeployFunction and MigrateFunction have none: their
# first invocation is a CloudFormation deployment or the migrations). The events that name the demo
# reservation or ticket (localstage.seed) get 404 from the database: the whole path but the answer's model.
FIRST_EVENTS = {
    "AuthorizerFunction": "authorizer.json", "AvailabilityFunction": "availability.json",
    "CancelFunction": "cancel.json", "CheckInFunction": "check_in.json", "ConfirmFunction": "confirm.json",
    "EventsFunction": "create_event.json", "ExpireFunction": "expire.json", "HealthFunction": "health.json",
    "QueueFunction": "join_queue.json", "ReservationFunction": "get_reservation.json",
    "ReserveFunction": "reserve.json",
}
SOURCES = ("template.yaml", "functions", "layers/tickets", "Makefile")


def lambda_python() -> str:
    return os.environ.get("LAMBDA_PYTHON") or subprocess.run(
        [str(ROOT / "tools" / "lambda_python.sh")], capture_output=True, text=True, check=True).stdout.strip()


def newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file() and not any(
            part == "__pycache__" or part.endswith(".egg-info") for part in p.parts))
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def build_if_needed() -> None:
    """`make build` when there is no build, or a source is newer than it (not when SAM_BUILD_DIR
    names another build, e.g. an older commit's, to compare)."""
    built = BUILD_DIR / "template.yaml"
    if "SAM_BUILD_DIR" in os.environ:
        return
    if built.exists() and built.stat().st_mtime >= newest_source():
        return
    print(f"{built} is missing or older than the sources: make build", file=sys.stderr)
    subprocess.run(["make", "--no-print-directory", "build"], cwd=ROOT, check=True)  # noqa: S607 - the project's make


def built_functions() -> dict[str, tuple[Path, Path]]:
    """Each function's built folder and the layer's python/ folder, by logical id."""
    # A SafeLoader that reads CloudFormation's short tags (!Ref, !GetAtt) as plain data.
    template = yaml.load((BUILD_DIR / "template.yaml").read_text(), Loader=_CloudFormationLoader)  # noqa: S506
    resources = template["Resources"]
    layer = BUILD_DIR / resources["TicketsLayer"]["Properties"]["ContentUri"] / "python"
    return {name: (BUILD_DIR / r["Properties"]["CodeUri"], layer) for name, r in sorted(resources.items())
            if r["Type"] == "AWS::Serverless::Function"}


def environment(code_dir: Path | None, *, traced: bool) -> dict[str, str]:
    """What Lambda and template.yaml give a function at init (no request has come in yet)."""
    env = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "DB_HOST": "proxy.example", "DB_PORT": "5432", "DB_NAME": "tickets", "DB_USER": "tickets_app",
        "IDEMPOTENCY_TABLE": "tickets-idempotency", "PAYMENT_PROVIDER": "test", "POWERTOOLS_SERVICE_NAME": "tickets",
        "POWERTOOLS_METRICS_NAMESPACE": "Tickets", "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    if traced:
        env["LAMBDA_TASK_ROOT"] = str(code_dir)
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


# One fresh interpreter: wall and cpu (in-process, ms), process_wall and process_cpu (the whole
# child, ms), sdk (the AWS SDK and X-Ray packages the import loaded).
Sample = dict[str, Any]


def run_once(python: str, argv: list[str], env: dict[str, str]) -> Sample:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run([python, "-I", "-S", "-B", *argv], capture_output=True, text=True, env=env,
                               timeout=120, check=False)
    process_wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"{argv[:1]} failed:\n{completed.stderr[-3000:]}")
    process_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    wall, cpu, sdk = ast.literal_eval(completed.stdout.strip().splitlines()[-1]) if completed.stdout.strip() \
        else (0.0, 0.0, [])
    return {"wall": wall, "cpu": cpu, "process_wall": process_wall, "process_cpu": process_cpu, "sdk": sdk}


def first_requests(python: str, runs: int, functions: dict[str, tuple[Path, Path]]) -> dict[str, Any]:
    """Import and first invocation of each function's sample event, on local backends of its own."""
    # Imported here: the import-only rows need neither PostgreSQL nor moto.
    from localstage.runtime import LocalBackends  # noqa: PLC0415
    from localstage.seed import DEMO_ADMIN_TOKEN, TABLE_NAMES  # noqa: PLC0415
    from localstage.template import load_template  # noqa: PLC0415

    names = [name for name in functions if name in FIRST_EVENTS]
    samples: dict[str, list[tuple[float, float, float, float, int]]] = {name: [] for name in names}
    with LocalBackends(load_template(), durable=False) as backends:
        env = {**environment(None, traced=False), "DATABASE_URL": backends.database_url,
               "IDEMPOTENCY_TABLE": TABLE_NAMES["IdempotencyTable"], "QUEUE_TABLE": TABLE_NAMES["QueueTable"],
               "AWS_ENDPOINT_URL_DYNAMODB": backends.dynamodb_endpoint, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "TICKETS_ADMIN_TOKEN": DEMO_ADMIN_TOKEN,
               "TICKETS_ADMISSION_SECRET": "bench-admission-secret-0123456789", "POWERTOOLS_LOG_LEVEL": "WARNING"}
        for run in range(runs):
            for name in names:
                code_dir, layer_dir = functions[name]
                completed = subprocess.run(
                    [python, "-I", "-S", "-B", "-c", IMPORT_AND_INVOKE, str(code_dir), str(layer_dir),
                     str(ROOT / "events" / FIRST_EVENTS[name]), f"{name}-{run}-{time.time_ns()}"],
                    capture_output=True, text=True, env=env, timeout=120, check=False)
                if completed.returncode != 0:
                    raise SystemExit(f"{name} (first request) failed:\n{completed.stderr[-3000:]}")
                samples[name].append(ast.literal_eval(completed.stdout.strip().splitlines()[-1]))
    result: dict[str, Any] = {}
    for name, rows in samples.items():
        result[name] = {
            "event": FIRST_EVENTS[name], "status": sorted({row[4] for row in rows}),
            "import": {"cpu": summary([row[1] for row in rows]), "wall": summary([row[0] for row in rows])},
            "first_request": {"cpu": summary([row[3] for row in rows]), "wall": summary([row[2] for row in rows])},
            "import_and_first_request": {"cpu": summary([row[1] + row[3] for row in rows]),
                                         "wall": summary([row[0] + row[2] for row in rows])},
        }
    return result


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1)}


def measure(python: str, runs: int) -> dict[str, Any]:
    functions = built_functions()
    references = {"python -c pass": ["-c", "pass"], "import json": ["-c", IMPORT_MODULE, "json"],
                  "import asyncio": ["-c", IMPORT_MODULE, "asyncio"]}
    samples: dict[str, list[Sample]] = {}
    for _ in range(runs):  # interleaved, so that a noisy moment touches every row alike
        for name, argv in references.items():
            samples.setdefault(name, []).append(run_once(python, argv, environment(None, traced=False)))
        for name, (code_dir, layer_dir) in functions.items():
            for traced in (False, True):
                sample = run_once(python, ["-c", IMPORT_APP, str(code_dir), str(layer_dir)],
                                  environment(code_dir, traced=traced))
                samples.setdefault(f"{name} traced" if traced else name, []).append(sample)

    def figures(name: str, *clocks: str) -> dict[str, dict[str, float]]:
        return {clock: summary([sample[clock] for sample in samples[name]]) for clock in clocks}

    bare_cpu = statistics.median(sample["process_cpu"] for sample in samples["python -c pass"])
    result: dict[str, Any] = {
        "python": subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                                 text=True, check=True).stdout.strip(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "runs": runs, "budget_ms": BUDGET_MS, "budget_on": "import cpu median", "unit": "milliseconds",
        "references": {
            "python -c pass": figures("python -c pass", "process_cpu", "process_wall"),
            **{name: figures(name, "cpu", "wall") for name in ("import json", "import asyncio")},
        },
        "functions": {},
    }
    for name in functions:
        result["functions"][name] = {
            "import": figures(name, "cpu", "wall"),
            "process": figures(name, "process_cpu", "process_wall"),
            "traced": figures(f"{name} traced", "cpu", "wall"),
            "import_cpu_per_bare_start_cpu": round(statistics.median(s["cpu"] for s in samples[name]) / bare_cpu, 2),
            "sdk_loaded": {"import": samples[name][-1]["sdk"], "traced": samples[f"{name} traced"][-1]["sdk"]},
            "samples": {kind: [{clock: round(value, 1) for clock, value in sample.items() if clock != "sdk"}
                               for sample in samples[key]] for kind, key in (("import", name),
                                                                             ("traced", f"{name} traced"))},
        }
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"cold import of each built function: python {result['python']}, {result['runs']} fresh processes each, "
          f"ms median / min; load average {result['machine']['load_average'][0]:.1f} "
          f"on {result['machine']['cpus']} CPUs")
    print(f"{'':21} {'import cpu':>15} {'import wall':>15} {'x bare':>7} {'process cpu':>15} "
          f"{'traced cpu':>15} {'traced wall':>15}  SDK at import")
    for name, row in result["functions"].items():
        imp, proc, traced = row["import"], row["process"], row["traced"]
        over = "  OVER BUDGET" if imp["cpu"]["median"] > result["budget_ms"] else ""
        print(f"{name:21} {imp['cpu']['median']:7.1f} / {imp['cpu']['min']:5.1f} "
              f"{imp['wall']['median']:7.1f} / {imp['wall']['min']:5.1f} {row['import_cpu_per_bare_start_cpu']:7.2f} "
              f"{proc['process_cpu']['median']:7.1f} / {proc['process_cpu']['min']:5.1f} "
              f"{traced['cpu']['median']:7.1f} / {traced['cpu']['min']:5.1f} "
              f"{traced['wall']['median']:7.1f} / {traced['wall']['min']:5.1f}  "
              f"{','.join(row['sdk_loaded']['import']) or '-'}{over}")
    print("references (same run):")
    bare = result["references"]["python -c pass"]
    print(f"{'python -c pass':21} {'':15} {'':15} {'':7} {bare['process_cpu']['median']:7.1f} / "
          f"{bare['process_cpu']['min']:5.1f}   (process wall {bare['process_wall']['median']:.1f} / "
          f"{bare['process_wall']['min']:.1f})")
    for name in ("import json", "import asyncio"):
        ref = result["references"][name]
        print(f"{name:21} {ref['cpu']['median']:7.1f} / {ref['cpu']['min']:5.1f} "
              f"{ref['wall']['median']:7.1f} / {ref['wall']['min']:5.1f}")
    if result.get("first_request"):
        print("import, then the first invocation of the sample event (fresh processes, local PostgreSQL and moto):")
        print(f"{'':21} {'import cpu':>15} {'first cpu':>15} {'import+first cpu':>17} {'import+first wall':>18}"
              "  status  event")
        for name, row in result["first_request"].items():
            both = row["import_and_first_request"]
            print(f"{name:21} {row['import']['cpu']['median']:7.1f} / {row['import']['cpu']['min']:5.1f} "
                  f"{row['first_request']['cpu']['median']:7.1f} / {row['first_request']['cpu']['min']:5.1f} "
                  f"{both['cpu']['median']:9.1f} / {both['cpu']['min']:5.1f} "
                  f"{both['wall']['median']:10.1f} / {both['wall']['min']:5.1f}  "
                  f"{','.join(map(str, row['status'])):6}  {row['event']}")
    print("import: `import app` timed inside the process (the interpreter's start excluded); x bare: import cpu / "
          "process cpu of `python -c pass`; process: the whole child (start, import, exit); traced: tracing on, "
          f"as on AWS. Budget: import cpu median <= {result['budget_ms']:.0f} ms.")


def main() -> None:
    build_if_needed()
    python = lambda_python()
    result = measure(python, RUNS)
    if os.environ.get("BENCH_FIRST_REQUEST", "1") != "0":
        result["first_request"] = first_requests(python, RUNS, built_functions())
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
