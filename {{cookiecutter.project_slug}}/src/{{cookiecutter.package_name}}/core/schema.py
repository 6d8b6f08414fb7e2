"""The data contract in schema.yaml: the columns, their types and their valid values.

Standard library and PyYAML only: the serverless handler ships with this module.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ProjectError

SCHEMA_FILE = Path(__file__).with_name("schema.yaml")
# Rows in one request, to the service or the handler: enough for small batches, small enough
# to keep latency predictable.
MAX_ROWS = 1000
# What the service, `batch` and the inference log write beside a row's features: a column of
# the schema with one of these names would be overwritten by it, or overwrite it.
OUTPUT_NAMES = ("prediction", "probability", "prediction_id", "model_version", "time")


class SchemaError(ProjectError):
    """schema.yaml names a column the way an output is named."""


@dataclass(frozen=True)
class Column:
    """One column: its type and either a closed range or a set of allowed values."""

    name: str
    dtype: Literal["int", "float"]
    min: float | None = None
    max: float | None = None
    allowed: tuple[float, ...] | None = None

    def describe(self) -> str:
        if self.allowed is not None:
            return "one of " + ", ".join(str(value) for value in self.allowed)
        return f"between {self.min} and {self.max}"


@dataclass(frozen=True)
class Schema:
    features: tuple[Column, ...]
    target: Column

    @property
    def feature_names(self) -> list[str]:
        return [column.name for column in self.features]

    @property
    def columns(self) -> tuple[Column, ...]:
        return (*self.features, self.target)

    @property
    def target_is_categorical(self) -> bool:
        return self.target.allowed is not None


def _column(name: str, spec: dict[str, Any]) -> Column:
    values = spec.get("values")
    return Column(
        name=name,
        dtype=spec["dtype"],
        min=spec.get("min"),
        max=spec.get("max"),
        allowed=tuple(values) if values is not None else None,
    )


def load_schema(path: Path = SCHEMA_FILE) -> Schema:
    """Read the data contract."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    target = spec["target"]
    schema = Schema(
        features=tuple(_column(name, column) for name, column in spec["features"].items()),
        target=_column(target["name"], target),
    )
    taken = [column.name for column in schema.columns if column.name in OUTPUT_NAMES]
    if taken:
        raise SchemaError(
            f"{path}: {', '.join(taken)}: a column may not take an output's name "
            f"({', '.join(OUTPUT_NAMES)}); rename it"
        )
    return schema
