"""Powertools Logger, Metrics and Tracer, shared by every function of the layer."""

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
tracer = Tracer(service="tickets")

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def count(metric: str, value: int = 1) -> None:
    """Adds to a business metric (ReservationsHeld, SoldOut, ReservationsConfirmed, ReservationsExpired)."""
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)


def instrumented(handler: LambdaHandler, *, http: bool = True) -> LambdaHandler:
    """Wraps a Lambda entry point with structured logging, tracing and metric flushing."""
    wrapped = tracer.capture_lambda_handler(handler)
    wrapped = metrics.log_metrics(wrapped)
    return logger.inject_lambda_context(
        wrapped, correlation_id_path=correlation_paths.API_GATEWAY_HTTP if http else None, clear_state=True
    )
