"""Secrets in ``consumerProperties`` never leave the Overlord in clear text.

They are stored as given (tasks need them to reach Kafka) and masked in every
API response, in spec history and in logs. A spec posted back with masked
values keeps the stored secret, so GET-edit-POST round trips work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "<masked>"

# ssl.keystore.key / ssl.key.pem / ssl.keystore.base64 hold private keys (Kafka's PEM key store, librdkafka's
# inline key, our inline key store); druid.dynamic.config.provider only names environment variables.
_SECRET_KEY = re.compile(
    r"(password|passwd|secret|jaas|token|credential|private\.key|apikey|api\.key|"
    r"^ssl\.keystore\.key$|^ssl\.key\.pem$|^ssl\.keystore\.base64$)",
    re.I,
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def mask_properties(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (MASK if is_secret_key(k) and v is not None else v) for k, v in props.items()}


def mask(document: Any) -> Any:
    """A copy of any JSON document with every ``consumerProperties`` (and
    ``producerProperties``) object's secret values masked, wherever it nests."""
    if isinstance(document, list):
        return [mask(v) for v in document]
    if not isinstance(document, dict):
        return document
    out: dict[str, Any] = {}
    for key, value in document.items():
        if key in ("consumerProperties", "producerProperties") and isinstance(value, dict):
            out[key] = mask_properties(value)
        else:
            out[key] = mask(value)
    return out


def restore_masked(new_props: Mapping[str, Any], old_props: Mapping[str, Any]) -> dict[str, Any]:
    """Put back stored secrets where a client sent the mask instead of a value."""
    return {k: (old_props[k] if v == MASK and k in old_props else v) for k, v in new_props.items()}
