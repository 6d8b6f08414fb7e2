"""Errors a user can fix. The command line prints them as one `ERROR:` line each."""


class ProjectError(Exception):
    """Bad input the user can correct: nothing was written when this is raised."""


class ParamsError(ProjectError):
    """params.yaml is missing, unreadable or has a bad value."""


class DataError(ProjectError):
    """A data file does not match the schema or cannot be read."""


class RegistryError(ProjectError):
    """The MLflow registry cannot be reached or refused a change."""


class ModelError(ProjectError):
    """A model file is refused: it is not the file that was recorded, or it holds types that
    this project does not trust."""
