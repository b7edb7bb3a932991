"""Operating the workers: JSON logs with secrets and numbers masked, Prometheus metrics, health checks.

These modules import neither the Celery app nor the services; callers hand them what they check.
"""
