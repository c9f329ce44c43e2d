"""What the local stage reads from template.yaml: functions, their routes, schedules and environment; tables.

The template is the single source of truth: a route, a timeout or an environment variable added
there is served locally without touching the stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from localstage.lambda_runtime import ROOT

TEMPLATE_PATH = ROOT / "template.yaml"

DEFAULT_HANDLER = "app.lambda_handler"
DEFAULT_TIMEOUT_SECONDS = 3  # Lambda's own default, when neither the function nor Globals set one
DEFAULT_MEMORY_MB = 128


class _CloudFormationLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short tags (!Ref X, !Sub "...", !GetAtt a.b) as data."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _tagged)


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or ANY
    path: str  # as declared: /events/{event_id}
    function: str  # logical id
    pattern: re.Pattern[str] = field(compare=False, repr=False)
    static_segments: int = field(compare=False, repr=False)
    greedy: bool = field(compare=False, repr=False)
    authorizer: str | None = None  # logical id of the Lambda authorizer function API Gateway runs first

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Schedule:
    function: str
    expression: str
    interval_seconds: float | None  # None: not a rate() expression (cron), not run locally
    enabled: bool = True


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: str
    handler: str
    timeout_seconds: float
    memory_mb: int
    environment: dict[str, Any]  # values still hold {"Ref": ...} where the template says so
    routes: list[Route] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)

    @property
    def folder(self) -> str:
        return Path(self.code_uri).name


@dataclass
class Template:
    functions: dict[str, FunctionSpec]
    parameters: dict[str, dict[str, Any]]
    routes: list[Route]
    schedules: list[Schedule]
    tables: dict[str, dict[str, Any]]  # logical id -> Properties of each AWS::DynamoDB::Table

    def function(self, name: str) -> FunctionSpec:
        """A function by logical id (ReserveFunction) or folder name (reserve), case-insensitively."""
        wanted = name.strip().lower()
        for spec in self.functions.values():
            names = (spec.logical_id.lower(), spec.folder.lower(), spec.logical_id.lower().removesuffix("function"))
            if wanted in names:
                return spec
        known = ", ".join(sorted(self.functions))
        raise KeyError(f"no function {name!r} in template.yaml (known: {known})")

    def environment(self, spec: FunctionSpec, refs: dict[str, str]) -> dict[str, str]:
        """The function's environment with !Ref values resolved from `refs`, then parameter defaults."""
        resolved: dict[str, str] = {}
        for key, value in spec.environment.items():
            text = self._resolve(value, refs)
            if text is not None:
                resolved[key] = text
        return resolved

    def _resolve(self, value: Any, refs: dict[str, str]) -> str | None:
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = str(value["Ref"])
            if name in refs:
                return refs[name]
            default = self.parameters.get(name, {}).get("Default")
            return None if default is None else str(default)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        return None  # an intrinsic the stage cannot evaluate locally: left unset


def compile_path(path: str) -> tuple[re.Pattern[str], int, bool]:
    """A regex for an HTTP API route path: {name} is one segment, {name+} the rest of the path."""
    parts: list[str] = []
    static = 0
    greedy = False
    for segment in path.strip("/").split("/"):
        match = re.fullmatch(r"\{([A-Za-z0-9_.\-]+)(\+?)\}", segment)
        if match is None:
            parts.append(re.escape(segment))
            static += 1
        elif match.group(2):
            parts.append(f"(?P<{_group(match.group(1))}>.+)")
            greedy = True
        else:
            parts.append(f"(?P<{_group(match.group(1))}>[^/]+)")
    return re.compile("/" + "/".join(parts) if parts != [""] else "/"), static, greedy


def _group(name: str) -> str:
    """Path parameter names may hold - and .; regex group names may not (the original is kept aside)."""
    return re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m.group(0)):x}_", name)


def parameter_name(group: str) -> str:
    return re.sub(r"_([0-9a-f]+)_", lambda m: chr(int(m.group(1), 16)), group)


_RATE = re.compile(r"rate\(\s*(\d+)\s+(second|seconds|minute|minutes|hour|hours|day|days)\s*\)", re.IGNORECASE)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """Seconds between runs of a `rate(N unit)` schedule; None for cron() and anything else."""
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        return None
    unit = match.group(2).lower().removesuffix("s")
    return float(int(match.group(1)) * _UNIT_SECONDS[unit])


def _function_logical_id(arn: Any) -> str | None:
    """The function behind `!GetAtt SomeFunction.Arn`."""
    if isinstance(arn, dict) and isinstance(arn.get("Fn::GetAtt"), list) and arn["Fn::GetAtt"][1:] == ["Arn"]:
        return str(arn["Fn::GetAtt"][0])
    return None


@dataclass(frozen=True)
class ApiAuth:
    authorizers: dict[str, str]  # authorizer name -> logical id of its function
    default: str | None


def _api_auth(resources: dict[str, Any]) -> dict[str, ApiAuth]:
    """The Lambda authorizers of each AWS::Serverless::HttpApi, by the API's logical id."""
    found: dict[str, ApiAuth] = {}
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::HttpApi":
            continue
        auth = (resource.get("Properties") or {}).get("Auth") or {}
        authorizers = {name: function for name, config in (auth.get("Authorizers") or {}).items()
                       if (function := _function_logical_id((config or {}).get("FunctionArn")))}
        found[logical_id] = ApiAuth(authorizers, auth.get("DefaultAuthorizer"))
    return found


def _route_authorizer(event_properties: dict[str, Any], apis: dict[str, ApiAuth]) -> str | None:
    api_ref = event_properties.get("ApiId")
    api = apis.get(str(api_ref.get("Ref"))) if isinstance(api_ref, dict) else None
    if api is None:
        return None
    name = ((event_properties.get("Auth") or {}).get("Authorizer")) or api.default
    if name is None or name == "NONE":
        return None
    if name not in api.authorizers:
        raise ValueError(f"template.yaml: route authorizer {name!r} is not a Lambda authorizer of its API")
    return api.authorizers[name]


def load_template(path: Path = TEMPLATE_PATH) -> Template:
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader
    apis = _api_auth(document.get("Resources") or {})
    globals_ = (document.get("Globals") or {}).get("Function") or {}
    global_env = ((globals_.get("Environment") or {}).get("Variables")) or {}
    functions: dict[str, FunctionSpec] = {}
    routes: list[Route] = []
    schedules: list[Schedule] = []
    tables: dict[str, dict[str, Any]] = {}
    for logical_id, resource in (document.get("Resources") or {}).items():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::DynamoDB::Table":
            tables[logical_id] = dict(resource.get("Properties") or {})
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        env = dict(global_env)
        env.update(((props.get("Environment") or {}).get("Variables")) or {})
        spec = FunctionSpec(
            logical_id=logical_id,
            code_uri=str(props.get("CodeUri", globals_.get("CodeUri", "."))).rstrip("/"),
            handler=str(props.get("Handler", globals_.get("Handler", DEFAULT_HANDLER))),
            timeout_seconds=float(props.get("Timeout", globals_.get("Timeout", DEFAULT_TIMEOUT_SECONDS))),
            memory_mb=int(props.get("MemorySize", globals_.get("MemorySize", DEFAULT_MEMORY_MB))),
            environment=env,
        )
        for event in (props.get("Events") or {}).values():
            kind = event.get("Type")
            eprops = event.get("Properties") or {}
            if kind == "HttpApi":
                method = str(eprops.get("Method", "ANY")).upper()
                route_path = str(eprops.get("Path", "/{proxy+}"))
                pattern, static, greedy = compile_path(route_path)
                route = Route(method=method, path=route_path, function=logical_id, pattern=pattern,
                              static_segments=static, greedy=greedy, authorizer=_route_authorizer(eprops, apis))
                spec.routes.append(route)
                routes.append(route)
            elif kind in ("Schedule", "ScheduleV2"):
                expression = str(eprops.get("Schedule") or eprops.get("ScheduleExpression") or "")
                enabled = eprops.get("Enabled", True) is not False and eprops.get("State", "ENABLED") != "DISABLED"
                schedule = Schedule(function=logical_id, expression=expression,
                                    interval_seconds=rate_seconds(expression), enabled=enabled)
                spec.schedules.append(schedule)
                schedules.append(schedule)
        functions[logical_id] = spec
    # The most specific route first: more literal segments, then no greedy parameter, then a method over ANY.
    routes.sort(key=lambda r: (-r.static_segments, r.greedy, r.method == "ANY"))
    return Template(functions=functions, parameters=dict(document.get("Parameters") or {}), routes=routes,
                    schedules=schedules, tables=tables)


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


def match_route(routes: list[Route], method: str, path: str) -> tuple[RouteMatch | None, bool]:
    """The route for (method, path), and whether some route matched the path with another method."""
    path_known = False
    for route in routes:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        path_known = True
        if route.method in (method, "ANY"):
            params = {parameter_name(k): unquote(v) for k, v in found.groupdict().items()}
            return RouteMatch(route, params), True
    return None, path_known
