"""The DVC stages: data, prepare, train, evaluate, register, drift (one module, one stage)."""
