"""driftloop's tests (a package, so ``tests.support`` imports normally from any test)."""
