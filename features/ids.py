"""Row ids in Neuronpedia's style (cuid-like strings), so exported rows keep their ids across imports."""

import secrets
import string
import time

_ALPHABET = string.digits + string.ascii_lowercase


def _base36(number: int) -> str:
    out = ""
    while number:
        number, rem = divmod(number, 36)
        out = _ALPHABET[rem] + out
    return out or "0"


def new_id() -> str:
    """25 characters: 'c', milliseconds in base 36 (sortable by creation), then randomness."""
    stamp = _base36(int(time.time() * 1000)).rjust(9, "0")
    rand = "".join(secrets.choice(_ALPHABET) for _ in range(15))
    return f"c{stamp}{rand}"
