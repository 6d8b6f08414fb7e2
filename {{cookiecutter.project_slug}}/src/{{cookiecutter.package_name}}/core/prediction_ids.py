"""Prediction ids: one per scored row, the key that joins a prediction to its ground truth later.

The service, `batch` and the serverless handler return each row's id with its prediction; the
service also writes it to the inference log. An id is a random UUID (version 4) written as 32
lowercase hex characters, as `uuid.uuid4().hex` writes it. The ids of a batch of rows are made at
once, from one read of the system's random source: about 0.1 microseconds an id for 256 rows,
4 for one row, against 1.7 for `uuid.uuid4().hex`, three times what `batch` spends on a whole
row with a fast model (docs/benchmarks-batch.md: 1.7 million rows/s).

numpy and the standard library only: the serverless handler ships with this module.
"""

import os

import numpy as np

PREDICTION_ID = "prediction_id"
ID_LENGTH = 32
# A version 4 UUID's fixed bits (RFC 9562): the version in the high 4 bits of byte 6, the
# variant (binary 10) in the high 2 bits of byte 8.
VERSION_BYTE, VERSION_MASK, VERSION_BITS = 6, 0x0F, 0x40
VARIANT_BYTE, VARIANT_MASK, VARIANT_BITS = 8, 0x3F, 0x80


def id_text(count: int) -> str:
    """`count` new ids, end to end in one string of `count * ID_LENGTH` hex characters."""
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, VERSION_BYTE] = (raw[:, VERSION_BYTE] & VERSION_MASK) | VERSION_BITS
    raw[:, VARIANT_BYTE] = (raw[:, VARIANT_BYTE] & VARIANT_MASK) | VARIANT_BITS
    return raw.tobytes().hex()


def new_ids(count: int) -> list[str]:
    """`count` new ids, one string each."""
    text = id_text(count)
    return [text[start : start + ID_LENGTH] for start in range(0, len(text), ID_LENGTH)]
