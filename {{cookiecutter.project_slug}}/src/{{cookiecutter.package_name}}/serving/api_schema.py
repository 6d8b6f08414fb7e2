"""The service's request and response types, derived from the data contract in schema.yaml."""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from ..core.prediction_ids import ID_LENGTH, PREDICTION_ID
from ..core.schema import MAX_ROWS, Column, Schema

# Beyond this many unknown or missing fields a row is refused in one error, not one per field:
# a row with 100,000 unknown keys would otherwise make 100,000 errors (tens of MB to answer and
# log), and `[{}, {}, ...]` thirty "Field required" per row.
MAX_FIELD_ERRORS = 10
# Field names a refused row's one error shows.
SHOWN_NAMES = 5
# A body's size limit allows, for each value of a row: the longest number JSON writes
# (`-2.2250738585072014e-308`, 24 characters) and 24 bytes of punctuation and spacing around
# the value and its name (`"name": ` and `,`, a newline and indentation as deep as `indent=4`
# puts it); for each row, 32 bytes of braces and spacing; for the request, 1 KiB.
BYTES_PER_NUMBER = 24
BYTES_AROUND_A_VALUE = 24
BYTES_AROUND_A_ROW = 32
BYTES_AROUND_THE_ROWS = 1024
# /feedback's labels: `{"prediction_id": "<id>", "label": <value>}`.
LABEL = "label"
ID_PATTERN = "^[0-9a-f]{" + str(ID_LENGTH) + "}$"


class Strict(BaseModel):
    """Unknown fields, NaN, infinities and strings posing as numbers are all refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _close_to_the_schema(cls, data: Any) -> Any:
        """A row far from the schema is one error; a few wrong fields are one error each."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        if data.keys() == fields.keys():  # the usual row, checked at C speed: nothing to count
            return data
        unknown = sum(1 for name in data if name not in fields)
        missing = [name for name in fields if name not in data]
        if unknown + len(missing) <= MAX_FIELD_ERRORS:
            return data
        shown = ", ".join(missing[:SHOWN_NAMES]) + (", ..." if len(missing) > SHOWN_NAMES else "")
        raise ValueError(
            f"{unknown} unknown and {len(missing)} missing fields"
            + (f" (missing: {shown})" if missing else "")
            + f"; a row has exactly the {len(fields)} fields of the schema"
        )


def max_body_bytes(schema: Schema, rows: int = MAX_ROWS) -> int:
    """The largest body a request of `rows` rows of the schema (/predict) or of `rows` labels
    (/feedback) needs: its field names as JSON writes them, every value at its longest, and
    generous spacing."""
    row = BYTES_AROUND_A_ROW + sum(
        len(json.dumps(name)) + BYTES_PER_NUMBER + BYTES_AROUND_A_VALUE
        for name in schema.feature_names
    )
    label = (
        BYTES_AROUND_A_ROW
        + len(json.dumps(PREDICTION_ID))
        + len(json.dumps("0" * ID_LENGTH))
        + len(json.dumps(LABEL))
        + BYTES_PER_NUMBER
        + 2 * BYTES_AROUND_A_VALUE
    )
    return BYTES_AROUND_THE_ROWS + rows * max(row, label)


def _field(column: Column, description: str | None = None) -> tuple[Any, Any]:
    description = description or column.describe()
    if column.allowed is not None:
        # A Literal takes true for 1 and false for 0 (Python's bool is an int): not here.
        values: Any = Annotated[Literal[tuple(column.allowed)], BeforeValidator(_no_bool(column))]
        return values, Field(description=description)
    kind: type = int if column.dtype == "int" else float
    return kind, Field(ge=column.min, le=column.max, description=description)


def _no_bool(column: Column) -> Any:
    """A validator that refuses true and false, in the words pydantic refuses other values."""
    shown = [str(value) for value in column.allowed or ()]
    expected = " or ".join([", ".join(shown[:-1]), shown[-1]] if len(shown) > 1 else shown)

    def refuse_bool(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected}
            )
        return value

    return refuse_bool


def _id_field(description: str) -> tuple[Any, Any]:
    return str, Field(pattern=ID_PATTERN, description=description)


def row_model(schema: Schema) -> type[Strict]:
    """One row of features: a typed, bounded field per column of the schema."""
    fields: dict[str, Any] = {column.name: _field(column) for column in schema.features}
    model: type[Strict] = create_model("Row", __base__=Strict, **fields)
    return model


def prediction_model(schema: Schema) -> type[Strict]:
    """One answer: the row's prediction id, then the class and its probability, or the value."""
    key = _id_field(
        "this row's own id, kept with it in the inference log: the key that joins the "
        "prediction to its ground truth (POST /feedback)"
    )
    if schema.target_is_categorical:
        fields: dict[str, Any] = {
            PREDICTION_ID: key,
            "prediction": (int, Field(description=f"predicted {schema.target.name}")),
            "probability": (
                float,
                Field(ge=0, le=1, description="probability of the positive class"),
            ),
        }
    else:
        fields = {
            PREDICTION_ID: key,
            "prediction": (float, Field(description=f"predicted {schema.target.name}")),
        }
    model: type[Strict] = create_model("Prediction", __base__=Strict, **fields)
    return model


def label_model(schema: Schema) -> type[Strict]:
    """One label of /feedback: a prediction's id and the true value of the target."""
    target = schema.target
    fields: dict[str, Any] = {
        PREDICTION_ID: _id_field("the id the service answered with the prediction"),
        LABEL: _field(target, f"the true {target.name}: {target.describe()}"),
    }
    model: type[Strict] = create_model("Label", __base__=Strict, **fields)
    return model


class Accepted(Strict):
    """The answer to /feedback."""

    accepted: int = Field(
        ge=1, description="labels taken: written now, or already written with the same value"
    )
