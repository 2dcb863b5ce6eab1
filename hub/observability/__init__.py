"""Observability: request ids that follow an order from the API to its task and provider call
(context.py), Prometheus metrics (metrics.py, middleware.py), log formatting (logs.py).
docs/observability.md describes them for operators."""
