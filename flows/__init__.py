"""Prefect flows: thin orchestration over the plain step functions in hivau.tasks."""
