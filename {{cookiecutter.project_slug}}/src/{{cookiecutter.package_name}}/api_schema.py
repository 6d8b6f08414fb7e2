"""The service's request and response types, derived from the data contract in schema.yaml."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from .schema import Column, Schema


class Strict(BaseModel):
    """Unknown fields, NaN, infinities and strings posing as numbers are all refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


def _field(column: Column) -> tuple[Any, Any]:
    if column.allowed is not None:
        return Literal[tuple(column.allowed)], Field(description=column.describe())
    kind: type = int if column.dtype == "int" else float
    return kind, Field(ge=column.min, le=column.max, description=column.describe())


def row_model(schema: Schema) -> type[Strict]:
    """One row of features: a typed, bounded field per column of the schema."""
    fields: dict[str, Any] = {column.name: _field(column) for column in schema.features}
    model: type[Strict] = create_model("Row", __base__=Strict, **fields)
    return model


def prediction_model(schema: Schema) -> type[Strict]:
    """One answer: the class and its probability, or the predicted value."""
    if schema.target_is_categorical:
        fields: dict[str, Any] = {
            "prediction": (int, Field(description=f"predicted {schema.target.name}")),
            "probability": (
                float,
                Field(ge=0, le=1, description="probability of the positive class"),
            ),
        }
    else:
        fields = {"prediction": (float, Field(description=f"predicted {schema.target.name}"))}
    model: type[Strict] = create_model("Prediction", __base__=Strict, **fields)
    return model
