"""Model files: reading them safely, their key names and architecture, the download cache,
and the synthetic checkpoints the tests and benchmarks use."""
