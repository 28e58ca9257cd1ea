"""The BentoML service and its build configuration."""
