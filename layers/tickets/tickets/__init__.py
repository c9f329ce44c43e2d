"""Shared code of the ticket-reservation functions: domain, SQL and models."""
