"""Load-benchmark harness: bundled backends, load generators, peers, scenarios, reports (issue #5)."""
