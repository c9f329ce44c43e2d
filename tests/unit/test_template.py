"""What a first deploy on a new account needs from template.yaml, checked on the template as SAM
translates it (samtranslator, offline, as `sam deploy` would) and by cfn-lint with its
informational rules. The database role's side is tests/integration/test_database_roles.py."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ACCOUNT_CONCURRENCY = 1000  # the default quota; a new account's is often 10
UNRESERVED_MINIMUM = 100  # Lambda refuses reservations that leave less than this unreserved
DEPLOY_STEPS = {"MigrateFunction", "DeployFunction"}  # the functions that run the migration itself


class _NoManagedPolicies:
    """The template names no managed policy by name, so the transform needs no IAM look-up."""

    def load(self) -> dict[str, str]:
        return {}


@functools.cache
def source() -> dict[str, Any]:
    return dict(yaml_parse(TEMPLATE.read_text(encoding="utf-8")))


@functools.cache
def _translated() -> dict[str, Any]:
    template = copy.deepcopy(source())
    for resource in template["Resources"].values():  # `sam deploy` uploads these first
        properties = resource.get("Properties") or {}
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(uri), str):
                properties[uri] = f"s3://bucket/{properties[uri].strip('/')}"
    return dict(transform(template, {}, _NoManagedPolicies()))


def translated() -> dict[str, Any]:
    return copy.deepcopy(_translated())


def resources(kind: str | None = None) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in translated()["Resources"].items() if kind is None or r["Type"] == kind}


def depends_on(resource: dict[str, Any]) -> set[str]:
    value = resource.get("DependsOn", [])
    return {value} if isinstance(value, str) else set(value)


def references(value: Any) -> set[str]:
    """Logical ids a value refers to (Ref, Fn::GetAtt, ${Name} and ${Name.Attribute} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else str(inner).split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (inner, {}) if isinstance(inner, str) else inner
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)} - set(variables)
                found |= references(variables)
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found


def closure(name: str, *, only_depends_on: bool = False) -> set[str]:
    """Every resource `name` waits for: its DependsOn and (unless told) what it refers to, transitively."""
    everything = resources()
    seen: set[str] = set()
    todo = [name]
    while todo:
        resource = everything[todo.pop()]
        edges = depends_on(resource) | (set() if only_depends_on else references(resource.get("Properties", {})))
        for edge in edges & set(everything) - seen:
            seen.add(edge)
            todo.append(edge)
    return seen


def functions() -> dict[str, dict[str, Any]]:
    return resources("AWS::Lambda::Function")


# ---------------------------------------------------------------------------------------------
# Evaluating the little the checks need: conditions, Fn::If, Fn::Sub, Fn::Select, Fn::Split.


def parameter_values(**overrides: str) -> dict[str, Any]:
    values = {name: p.get("Default") for name, p in source()["Parameters"].items()}
    values.update(overrides)
    values["AWS::StackId"] = ("arn:aws:cloudformation:us-east-1:123456789012:stack/my--stack-/"
                              "0a1b2c3d-4e5f-6789-abcd-ef0123456789")
    values["AWS::NoValue"] = None
    return values


def evaluate(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (key, inner), = value.items()
        if key == "Ref":
            return params.get(inner, f"<{inner}>")
        if key == "Fn::GetAtt":  # an ARN-shaped stand-in
            return f"arn:aws:service:us-east-1:123456789012:{inner[1]}:<{inner[0]}>"
        if key == "Fn::If":
            condition, yes, no = inner
            return evaluate(yes if condition_holds(condition, params) else no, params)
        if key == "Fn::Equals":
            return str(evaluate(inner[0], params)) == str(evaluate(inner[1], params))
        if key == "Fn::Not":
            return not evaluate(inner[0], params)
        if key == "Fn::Select":
            return evaluate(inner[1], params)[int(inner[0])]
        if key == "Fn::Split":
            return str(evaluate(inner[1], params)).split(inner[0])
        if key == "Fn::Sub":
            text, variables = (inner, {}) if isinstance(inner, str) else inner
            scope = {**params, **{name: evaluate(v, params) for name, v in variables.items()}}
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(scope.get(m.group(1), f"<{m.group(1)}>")), text)
    return value


def condition_holds(name: str, params: dict[str, Any]) -> bool:
    return bool(evaluate(translated()["Conditions"][name], params))


# ---------------------------------------------------------------------------------------------
# 1. Concurrency: nothing reserved by default; what Enabled reserves fits a 1,000 quota.


def reserved(params: dict[str, Any]) -> dict[str, int]:
    found = {}
    for name, function in functions().items():
        value = evaluate(function["Properties"].get("ReservedConcurrentExecutions"), params)
        if value is not None:
            found[name] = int(value)
    return found


def test_reserved_concurrency_is_off_by_default() -> None:
    assert source()["Parameters"]["ReservedConcurrency"]["Default"] == "Disabled"
    assert reserved(parameter_values()) == {}


def test_enabled_reserved_concurrency_leaves_the_unreserved_minimum_of_a_default_quota() -> None:
    enabled = reserved(parameter_values(ReservedConcurrency="Enabled"))
    assert "ReserveFunction" in enabled and "ConfirmFunction" in enabled
    assert not DEPLOY_STEPS & set(enabled)
    assert sum(enabled.values()) == 452
    assert sum(enabled.values()) <= ACCOUNT_CONCURRENCY - UNRESERVED_MINIMUM


# ---------------------------------------------------------------------------------------------
# 2. Parameters: each one constrained, its default valid.


def test_every_parameter_is_validated_and_its_default_passes() -> None:
    for name, parameter in source()["Parameters"].items():
        default = parameter.get("Default")
        if "AllowedValues" in parameter:
            assert default in parameter["AllowedValues"], name
        elif parameter["Type"] == "Number":
            assert "MinValue" in parameter and "MaxValue" in parameter, name
            assert parameter["MinValue"] <= float(default) <= parameter["MaxValue"], name
        else:
            assert "AllowedPattern" in parameter, name
            assert re.fullmatch(parameter["AllowedPattern"], str(default)), name
            if "MaxLength" in parameter:
                assert len(str(default)) <= parameter["MaxLength"], name


def allowed(parameter: str, value: str) -> bool:
    spec = source()["Parameters"][parameter]
    return bool(re.fullmatch(spec["AllowedPattern"], value)) and len(value) <= spec.get("MaxLength", 4096)


def test_the_vpc_range_holds_the_four_slash_20_subnets() -> None:
    for ok in ("10.40.0.0/16", "10.0.0.0/17", "192.168.0.0/18"):
        assert allowed("VpcCidr", ok), ok
    for wrong in ("10.0.0.0/19", "10.0.0.0/20", "10.0.0.0/24", "10.0.0.0/15", "10.0.0.256/16", "10.0.0/16"):
        assert not allowed("VpcCidr", wrong), wrong
    subnets = [s["Properties"]["CidrBlock"] for s in resources("AWS::EC2::Subnet").values()]
    assert all(s["Fn::Select"][1] == {"Fn::Cidr": [{"Ref": "VpcCidr"}, 4, 12]} for s in subnets)  # four /20s


def test_the_proxy_name_is_valid_whatever_the_stack_is_called() -> None:
    for ok in ("prod", "eu-west-2", "a", "x" * 20):
        assert allowed("StageName", ok), ok
    for wrong in ("a--b", "prod-", "-prod", "Prod", "2prod", "x" * 21, "pr_od"):
        assert not allowed("StageName", wrong), wrong
    proxy = resources("AWS::RDS::DBProxy")["DatabaseProxy"]["Properties"]["DBProxyName"]
    for stage in ("prod", "eu-west-2", "x" * 20):
        name = evaluate(proxy, parameter_values(StageName=stage))
        assert name == f"tickets-{stage}-0a1b2c3d"
        # RDS: a letter first, letters, digits and hyphens, no "--", no final hyphen, 63 at most.
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name) and "--" not in name and not name.endswith("-")
        assert len(name) <= 63


def test_the_engine_version_is_a_current_one() -> None:
    version = source()["Parameters"]["DatabaseEngineVersion"]["Default"]
    major, minor = (int(part) for part in version.split("."))
    assert (major, minor) >= (16, 13)  # 16.6, the old default, is being withdrawn for new clusters
    assert "describe-db-engine-versions" in source()["Parameters"]["DatabaseEngineVersion"]["Description"]
    cluster = resources("AWS::RDS::DBCluster")["DatabaseCluster"]["Properties"]
    assert cluster["EngineVersion"] == {"Ref": "DatabaseEngineVersion"}


# ---------------------------------------------------------------------------------------------
# 3. Deletion protection cannot turn a failed first deploy into ROLLBACK_FAILED.


def test_deletion_protection_is_the_last_step_of_a_deploy() -> None:
    (cluster,) = resources("AWS::RDS::DBCluster").values()
    assert "DeletionProtection" not in cluster["Properties"]  # created unprotected
    assert cluster["DeletionPolicy"] == "Snapshot"
    (name, switch), = resources("Custom::DeletionProtection").items()
    assert switch["Properties"]["Enabled"] == {"Ref": "DatabaseDeletionProtection"}
    assert switch["Properties"]["ClusterIdentifier"] == {"Ref": "DatabaseCluster"}
    assert source()["Parameters"]["DatabaseDeletionProtection"]["Default"] == "true"
    # It waits for every resource but those SAM derives from a function or the API (permissions,
    # the schedule's rule, the stage: they cannot fail once those exist) and the optional e-mail
    # subscription; DeployFunction lifts the protection should a create still roll back.
    derived = {"AWS::Lambda::Permission", "AWS::Events::Rule", "AWS::ApiGatewayV2::Stage"}
    expected = {n for n, r in resources().items() if r["Type"] not in derived and "Condition" not in r} - {name}
    assert expected - closure(name) == set()


# ---------------------------------------------------------------------------------------------
# 4. The migration: every function after it; the network it needs after it on delete; a bounded reply.


def test_every_function_goes_live_after_the_migrations() -> None:
    for name in set(functions()) - DEPLOY_STEPS:
        assert "SchemaMigrations" in closure(name, only_depends_on=True), name


def test_the_migration_depends_on_the_network_it_needs() -> None:
    migration = resources()["SchemaMigrations"]
    needed = {name for name, r in resources().items() if r["Type"] in {
        "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::VPCEndpoint",
        "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress", "AWS::RDS::DBProxyTargetGroup"}}
    assert {"PrivateSubnetARoutes", "PrivateSubnetBRoutes"} <= needed
    assert needed <= depends_on(migration)


def test_custom_resources_answer_from_outside_the_vpc_within_a_bounded_time() -> None:
    deploy = functions()["DeployFunction"]["Properties"]
    migrate = functions()["MigrateFunction"]["Properties"]
    assert "VpcConfig" not in deploy  # its reply never depends on the stack's network
    assert "VpcConfig" in migrate
    assert migrate["Timeout"] + 30 <= deploy["Timeout"]  # DeployFunction outlives MigrateFunction and replies
    custom = {n: r for n, r in resources().items() if r["Type"].startswith("Custom::")}
    assert set(custom) == {"SchemaMigrations", "DatabaseDeletionProtectionSwitch"}
    for name, resource in custom.items():
        properties = resource["Properties"]
        assert properties["ServiceToken"] == {"Fn::GetAtt": ["DeployFunction", "Arn"]}, name
        assert deploy["Timeout"] < properties["ServiceTimeout"] <= 3600 or name != "SchemaMigrations"
        assert int(properties["ServiceTimeout"]) <= 3600, name


# ---------------------------------------------------------------------------------------------
# 5. The functions sign in as the least-privilege user; only MigrateFunction as the master.


def connect_users(function: str) -> set[str]:
    role_name = functions()[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    users = set()
    for policy in resources()[role_name]["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement["Action"] in ("rds-db:connect", ["rds-db:connect"]):
                users.add(evaluate(statement["Resource"], parameter_values()).rsplit("/", 1)[1])
    return users


def test_only_the_migration_signs_in_as_the_master_user() -> None:
    for name, function in functions().items():
        variables = function["Properties"]["Environment"]["Variables"]
        in_vpc = "VpcConfig" in function["Properties"]
        if name == "MigrateFunction":
            assert variables["DB_USER"] == "tickets" and connect_users(name) == {"tickets"}
        elif in_vpc:
            assert variables["DB_USER"] == "tickets_app" and connect_users(name) == {"tickets_app"}, name
        else:
            assert connect_users(name) == set(), name
    secrets = {evaluate(r["Properties"]["GenerateSecretString"].get("SecretStringTemplate", "{}"), {})
               for r in resources("AWS::SecretsManager::Secret").values()}
    assert {json.loads(s).get("username") for s in secrets} == {"tickets", "tickets_app", None}
    auth = resources("AWS::RDS::DBProxy")["DatabaseProxy"]["Properties"]["Auth"]
    assert {a["SecretArn"]["Ref"] for a in auth} == {"DatabaseSecret", "AppDatabaseSecret"}
    assert all(a["IAMAuth"] == "REQUIRED" for a in auth)


def test_secrets_say_what_happens_to_them_on_delete() -> None:
    for name, secret in resources("AWS::SecretsManager::Secret").items():
        assert secret.get("DeletionPolicy") and secret.get("UpdateReplacePolicy"), name


# ---------------------------------------------------------------------------------------------
# 6. Logs: a group with a retention for every function, deleted with the stack.


def test_every_function_logs_to_a_group_with_retention_that_the_stack_owns() -> None:
    groups = resources("AWS::Logs::LogGroup")
    used = []
    for name, function in functions().items():
        group = function["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        assert group in groups, name
        used.append(group)
    assert len(used) == len(set(used))  # one group per function
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        assert group["DeletionPolicy"] == "Delete", name


# ---------------------------------------------------------------------------------------------
# 7. Alarms reach a person: a topic key CloudWatch may use, and the alarms the on-sale needs.


def test_the_alarm_topic_uses_a_key_cloudwatch_may_use() -> None:
    assert "alias/aws/sns" not in json.dumps(translated())
    (topic,) = resources("AWS::SNS::Topic").values()
    key = resources()[topic["Properties"]["KmsMasterKeyId"]["Ref"]]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    grants = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
              if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} and s["Effect"] == "Allow"]
    assert grants and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(grants[0]["Action"])


def _about(dimensions: list[dict[str, Any]]) -> str:
    names: set[str] = set()
    for dimension in dimensions:
        names |= references(dimension["Value"]) or {str(dimension["Value"])}
    return "/".join(sorted(names))


def alarm_metrics() -> dict[str, set[tuple[str, str]]]:
    """(metric, what it is about) for each alarm."""
    found: dict[str, set[tuple[str, str]]] = {}
    for name, alarm in resources("AWS::CloudWatch::Alarm").items():
        properties = alarm["Properties"]
        stats = [{"MetricName": properties.get("MetricName"), "Dimensions": properties.get("Dimensions", [])}]
        stats += [m["MetricStat"]["Metric"] for m in properties.get("Metrics", []) if "MetricStat" in m]
        found[name] = {(s["MetricName"], _about(s["Dimensions"])) for s in stats if s["MetricName"]}
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    return found


@pytest.mark.parametrize(("metric", "about"), [
    ("5xx", "HttpApi/StageName"),
    ("Errors", "ExpireFunction"),  # expiry errors
    ("Errors", "AuthorizerFunction"),  # authorizer errors
    ("ClientConnectionsSetupFailedAuth", "DatabaseProxy"),  # proxy sign-in failures: the functions'
    ("DatabaseConnectionsSetupFailed", "DatabaseProxy"),  # and the proxy's own, to the database
    ("ACUUtilization", "DatabaseInstance"),  # capacity at its maximum
    ("DatabaseConnectionsCurrentlySessionPinned", "DatabaseProxy"),
    ("Throttles", "ReserveFunction"),
])
def test_an_alarm_watches(metric: str, about: str) -> None:
    assert any((metric, about) in watched for watched in alarm_metrics().values())


def test_the_on_sale_dashboard_shows_what_an_on_sale_needs() -> None:
    (dashboard,) = resources("AWS::CloudWatch::Dashboard").values()
    body = json.loads(re.sub(r"\$\{[^}]+\}", "x", dashboard["Properties"]["DashboardBody"]["Fn::Sub"]))
    titles = " | ".join(widget["properties"]["title"] for widget in body["widgets"]).lower()
    for wanted in ("reserves per second", "sold out", "409 rate", "p95", "proxy connections", "cpu"):
        assert wanted in titles, wanted


# ---------------------------------------------------------------------------------------------
# 8. The authorizer's verdict is cached briefly, per token.


def test_the_authorizer_verdict_is_cached_briefly_per_token() -> None:
    (api,) = resources("AWS::ApiGatewayV2::Api").values()
    scheme = api["Properties"]["Body"]["components"]["securitySchemes"]["OrganizerToken"]
    authorizer = scheme["x-amazon-apigateway-authorizer"]
    assert 0 < authorizer["authorizerResultTtlInSeconds"] <= 300
    assert authorizer["identitySource"] == ["$request.header.Authorization"]


# ---------------------------------------------------------------------------------------------
# cfn-lint, informational rules included (`make validate` runs it too).


def test_cfn_lint_finds_nothing_with_informational_rules_on() -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE, config=ManualArgs(include_checks=["I"], regions=["us-east-1"]))
    assert [str(match) for match in matches] == []
