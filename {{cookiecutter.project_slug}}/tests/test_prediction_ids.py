"""Prediction ids: version 4 UUIDs as 32 hex characters, a new one for every row."""

import re
import uuid

import pytest

from {{ cookiecutter.package_name }}.core.prediction_ids import ID_LENGTH, id_text, new_ids

from .conftest import PREDICTION_ID_PATTERN


@pytest.mark.parametrize("count", [1, 2, 1000])
def test_ids_are_version_4_uuids_as_32_lowercase_hex_characters(count: int) -> None:
    ids = new_ids(count)
    assert len(ids) == count
    for key in ids:
        parsed = uuid.UUID(key)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == key
        assert re.fullmatch(PREDICTION_ID_PATTERN, key)


def test_ids_never_repeat() -> None:
    ids = [key for _ in range(100) for key in new_ids(1000)]
    assert len(set(ids)) == len(ids)


def test_the_text_of_a_batch_is_its_ids_end_to_end() -> None:
    text = id_text(50)
    assert len(text) == 50 * ID_LENGTH
    ids = [text[start : start + ID_LENGTH] for start in range(0, len(text), ID_LENGTH)]
    assert all(uuid.UUID(key).version == 4 for key in ids)
    assert new_ids(0) == []
