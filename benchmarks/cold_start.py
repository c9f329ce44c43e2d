"""What a cold start costs each function: importing its built handler module, as Lambda's init does.

    make bench-cold                   # builds first when the sources are newer than .aws-sam/build
    BENCH_RUNS=9 make bench-cold

Each function of template.yaml, as `make build` (sam build) leaves it in .aws-sam/build, is
imported in a fresh process of the runtime's interpreter (tools/lambda_python.sh), with only its
folder and the layer's python/ folder on the path (-I -S: no site-packages, no PYTHONPATH) and -B,
so nothing is written into the artifact: Lambda's /var/task and /opt are read-only, so what is not
shipped as bytecode is compiled again on every cold start. Two environments:

  import   tracing disabled (POWERTOOLS_TRACE_DISABLED=true, as sam local and the tests run it):
           the figure the budget is set on
  traced   LAMBDA_TASK_ROOT set and tracing on, as on AWS with `Tracing: Active`: the X-Ray SDK
           and what it patches are imported at init

The import figure is measured inside the process (time.perf_counter around `import app`), so
it excludes the interpreter's own start; `process` is the whole process as the parent saw it
(start, import, exit). References measured in the same run, interleaved with the functions:
`python -c pass` (the bare interpreter start, process time) and `import json` and `import
asyncio` (in-process), so that a figure can be read as a ratio on another machine. Writes
benchmarks/results/bench-cold.json. The figures are this machine's, not AWS's.
"""

from __future__ import annotations

import json
import os
import platform
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
# What a cold import must not load (tests/build checks it structurally): loaded on first use instead.
DEFERRED = ("boto3", "botocore", "aws_xray_sdk")

# The child: the path as Lambda sets it, the handler module imported, the time in milliseconds.
IMPORT_APP = """
import sys, time
start = time.perf_counter()
sys.path[:0] = sys.argv[1:3]
import app
elapsed = (time.perf_counter() - start) * 1000
print(repr((elapsed, sorted(m for m in %r if m in sys.modules))))
""" % (DEFERRED,)
IMPORT_MODULE = """
import sys, time
start = time.perf_counter()
__import__(sys.argv[1])
print(repr(((time.perf_counter() - start) * 1000, [])))
"""
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
    """`make build` when there is no build, or a source is newer than it."""
    built = BUILD_DIR / "template.yaml"
    if built.exists() and built.stat().st_mtime >= newest_source():
        return
    print(f"{built} is missing or older than the sources: make build", file=sys.stderr)
    subprocess.run(["make", "--no-print-directory", "build"], cwd=ROOT, check=True)


def built_functions() -> dict[str, tuple[Path, Path]]:
    """Each function's built folder and the layer's python/ folder, by logical id."""
    resources = yaml.load((BUILD_DIR / "template.yaml").read_text(), Loader=_CloudFormationLoader)["Resources"]
    layer = BUILD_DIR / resources["TicketsLayer"]["Properties"]["ContentUri"] / "python"
    return {name: (BUILD_DIR / r["Properties"]["CodeUri"], layer) for name, r in sorted(resources.items())
            if r["Type"] == "AWS::Serverless::Function"}


def environment(code_dir: Path | None, *, traced: bool) -> dict[str, str]:
    """What Lambda and template.yaml give a function at init (no request has come in yet)."""
    env = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "DB_HOST": "proxy.example", "DB_PORT": "5432", "DB_NAME": "tickets", "DB_USER": "tickets_app",
        "IDEMPOTENCY_TABLE": "tickets-idempotency", "PAYMENT_PROVIDER": "test", "POWERTOOLS_SERVICE_NAME": "tickets",
        "POWERTOOLS_METRICS_NAMESPACE": "Tickets", "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    if traced:
        env["LAMBDA_TASK_ROOT"] = str(code_dir)
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def run_once(python: str, argv: list[str], env: dict[str, str]) -> tuple[float, float, list[str]]:
    """(in-process ms, whole-process ms, deferred modules loaded) of one fresh interpreter."""
    started = time.perf_counter()
    completed = subprocess.run([python, "-I", "-S", "-B", *argv], capture_output=True, text=True, env=env,
                               timeout=60, check=False)
    process_ms = (time.perf_counter() - started) * 1000
    if completed.returncode != 0:
        raise SystemExit(f"{argv[:1]} failed:\n{completed.stderr[-3000:]}")
    if not completed.stdout.strip():
        return 0.0, process_ms, []
    inside, loaded = eval(completed.stdout.strip().splitlines()[-1])  # noqa: S307 - our own child's repr
    return float(inside), process_ms, list(loaded)


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 1), "min": round(min(samples), 1)}


def measure(python: str, runs: int) -> dict[str, Any]:
    functions = built_functions()
    references: dict[str, tuple[list[str], str]] = {
        "python -c pass": (["-c", "pass"], "process"),
        "import json": (["-c", IMPORT_MODULE, "json"], "inside"),
        "import asyncio": (["-c", IMPORT_MODULE, "asyncio"], "inside"),
    }
    samples: dict[str, dict[str, list[float]]] = {}
    loaded: dict[str, dict[str, list[str]]] = {}
    for _ in range(runs):  # interleaved, so that a noisy moment touches every row alike
        for name, (argv, _kind) in references.items():
            inside, process, _ = run_once(python, argv, environment(None, traced=False))
            row = samples.setdefault(name, {"inside": [], "process": []})
            row["inside"].append(inside)
            row["process"].append(process)
        for name, (code_dir, layer_dir) in functions.items():
            row = samples.setdefault(name, {"import": [], "process": [], "traced": []})
            for traced in (False, True):
                inside, process, modules = run_once(python, ["-c", IMPORT_APP, str(code_dir), str(layer_dir)],
                                                    environment(code_dir, traced=traced))
                row["traced" if traced else "import"].append(inside)
                if not traced:
                    row["process"].append(process)
                loaded.setdefault(name, {})["traced" if traced else "import"] = modules
    bare = statistics.median(samples["python -c pass"]["process"])
    result: dict[str, Any] = {
        "python": subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                                 text=True, check=True).stdout.strip(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "runs": runs, "budget_ms": BUDGET_MS, "unit": "milliseconds",
        "references": {name: summary(samples[name][kind]) for name, (_argv, kind) in references.items()},
        "functions": {},
    }
    for name in functions:
        row = samples[name]
        result["functions"][name] = {
            "import": summary(row["import"]), "process": summary(row["process"]), "traced": summary(row["traced"]),
            "import_per_bare_start": round(statistics.median(row["import"]) / bare, 2),
            "deferred_modules_loaded": loaded[name],
            "samples": {kind: [round(value, 1) for value in values] for kind, values in row.items()},
        }
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"cold import of each built function, python {result['python']}, {result['runs']} fresh processes each, "
          f"milliseconds (median / min)")
    print(f"{'':22} {'import':>15} {'x bare':>7} {'process':>15} {'traced':>15}  deferred loaded")
    for name, row in result["functions"].items():
        over = " OVER BUDGET" if row["import"]["median"] > result["budget_ms"] else ""
        late = ",".join(row["deferred_modules_loaded"]["import"]) or "-"
        print(f"{name:22} {row['import']['median']:7.1f} / {row['import']['min']:5.1f} "
              f"{row['import_per_bare_start']:7.2f} {row['process']['median']:7.1f} / {row['process']['min']:5.1f} "
              f"{row['traced']['median']:7.1f} / {row['traced']['min']:5.1f}  {late}{over}")
    print("references (same run):")
    for name, figures in result["references"].items():
        print(f"{name:22} {figures['median']:7.1f} / {figures['min']:5.1f}")
    print(f"import: `import app` inside the process (the interpreter's start excluded); x bare: import / median of "
          f"`python -c pass`; process: start + import + exit; traced: import with tracing on, as on AWS. "
          f"Budget: import median <= {result['budget_ms']:.0f} ms.")


def main() -> None:
    build_if_needed()
    result = measure(lambda_python(), RUNS)
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
