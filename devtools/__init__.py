"""Developer tools: the sandbox API, local processes for tests and benchmarks, the `make run` demo.

Never imported by production code (`worker`, `producers`), and not shipped in the wheel.
"""
