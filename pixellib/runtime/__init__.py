"""Process tuning for entry points that own the process: heap reuse, parallel maps."""
