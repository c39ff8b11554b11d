"""posegate's pytest entry point: the plugins under fixtures/ do the work."""
pytest_plugins = ["fixtures.options", "fixtures.cases", "fixtures.artifacts", "fixtures.gate", "fixtures.report",
                  "fixtures.training", "fixtures.isolation", "fixtures.random_order",
                  "pytester"]  # pytester: tests/machinery/test_isolation.py runs the guard on leaking tests
