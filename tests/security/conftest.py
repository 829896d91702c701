from tests.graph.conftest import launched  # noqa: F401  (the live runs a test starts, finished after it)
