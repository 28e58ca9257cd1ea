"""The work of each stage, as plain functions (Prefect tasks where retries or caching pay)."""
