"""Powertools Logger, Metrics and Tracer, shared by every function of the layer.

The Tracer exists only where traces are sent (on Lambda, with tracing not disabled): Powertools'
Tracer imports the X-Ray SDK, and its sampler botocore, even to switch itself off, which would
cost every cold start run with tracing off (sam local, the local stage, the tests) for nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

# Most invocations (reads, refusals) record no business metric; Powertools would warn on each.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

logger = Logger(service="tickets")
metrics = Metrics(namespace="Tickets", service="tickets")


def tracing_enabled() -> bool:
    """Powertools' own rule: on in a Lambda environment unless POWERTOOLS_TRACE_DISABLED is set;
    off under sam local and outside Lambda. (A static method of Tracer: it needs no X-Ray SDK.)"""
    return not Tracer._is_tracer_disabled()


tracer = Tracer(service="tickets") if tracing_enabled() else None

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def count(metric: str, value: int = 1) -> None:
    """Adds to a business metric (ReservationsHeld, SoldOut, ReservationsConfirmed, ReservationsExpired)."""
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)


def instrumented(handler: LambdaHandler, *, http: bool = True) -> LambdaHandler:
    """Wraps a Lambda entry point with structured logging, tracing and metric flushing."""
    wrapped = tracer.capture_lambda_handler(handler) if tracer is not None else handler
    wrapped = metrics.log_metrics(wrapped)
    return logger.inject_lambda_context(
        wrapped, correlation_id_path=correlation_paths.API_GATEWAY_HTTP if http else None, clear_state=True
    )
