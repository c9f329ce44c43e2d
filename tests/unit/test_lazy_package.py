"""tickets.lazy_package: Powertools' event_handler and data_classes packages load only what is used,
and every name of them is still there. Each check runs in a fresh interpreter (a package's import
happens once per process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
import tickets
before = set(sys.modules)
{statement}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_by(statement: str) -> list[str]:
    completed = subprocess.run([sys.executable, "-c", PROBE.format(statement=statement)], capture_output=True,
                               text=True, check=False, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return list(json.loads(completed.stdout.strip().splitlines()[-1]))


def test_the_http_resolver_loads_no_other_resolver_nor_asyncio() -> None:
    loaded = loaded_by("from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response")
    assert "aws_lambda_powertools.event_handler.api_gateway" in loaded
    for unused in ("asyncio", "aws_lambda_powertools.event_handler.appsync",
                   "aws_lambda_powertools.event_handler.bedrock_agent",
                   "aws_lambda_powertools.event_handler.vpc_lattice",
                   "aws_lambda_powertools.event_handler.openapi.merge",
                   "aws_lambda_powertools.utilities.data_classes.code_pipeline_job_event",
                   "aws_lambda_powertools.utilities.data_classes.s3_event"):
        assert unused not in loaded


@pytest.mark.parametrize("statement", [
    "from aws_lambda_powertools.event_handler import AppSyncResolver, BedrockAgentResolver, content_types",
    "from aws_lambda_powertools.event_handler import *; AppSyncResolver, VPCLatticeV2Resolver",
    "import aws_lambda_powertools.event_handler as h; assert 'AppSyncResolver' in h.__all__",
    "from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent, event_source",
    "from aws_lambda_powertools.event_handler.openapi import OpenAPIMerge, OpenAPIMergeError",
    "from aws_lambda_powertools.utilities.data_classes import *; DynamoDBStreamEvent",
])
def test_every_name_of_the_lazy_packages_is_still_importable(statement: str) -> None:
    loaded_by(statement)


def test_a_name_neither_package_has_is_an_import_error() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", "import tickets\nfrom aws_lambda_powertools.event_handler import NoSuchResolver"],
        capture_output=True, text=True, check=False, timeout=120)
    assert completed.returncode == 1
    assert "ImportError: cannot import name 'NoSuchResolver'" in completed.stderr
