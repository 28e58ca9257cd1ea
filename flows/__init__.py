"""Prefect flows: thin wiring of tasks, one flow per deployable job."""
