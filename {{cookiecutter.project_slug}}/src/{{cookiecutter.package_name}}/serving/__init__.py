"""The online service: exactly what the image runs, with `core` and nothing else of the package."""
