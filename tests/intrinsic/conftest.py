from tests.torch_threads import single_torch_thread  # noqa: F401
