"""Progressive delivery: config, per-row losses, the always-valid test, guardrails, the
rollout decision, sticky routing, and the simulation harness that checks them (issue 15)."""
