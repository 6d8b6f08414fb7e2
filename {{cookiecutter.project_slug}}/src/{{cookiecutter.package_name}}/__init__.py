"""The {{ cookiecutter.project_slug }} pipeline: prepare, train, evaluate and register a model."""
