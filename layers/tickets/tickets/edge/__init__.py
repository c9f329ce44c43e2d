"""The HTTP edge: the resolver, the refusal-to-HTTP mapping, idempotency, auth and buyers."""
