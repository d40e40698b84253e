"""Azure Blob Storage vaults: ``azure://CONTAINER/PREFIX`` through obstore's AzureStore.

Credentials come from the environment, in this order:

* ``AZURE_STORAGE_CONNECTION_STRING`` (``AccountName``/``AccountKey`` or
  ``SharedAccessSignature``, optional ``BlobEndpoint``, or ``UseDevelopmentStorage=true``);
* ``AZURE_STORAGE_ACCOUNT`` with ``AZURE_STORAGE_KEY`` or ``AZURE_STORAGE_SAS_TOKEN``, and
  optionally ``AZURE_STORAGE_ENDPOINT`` (e.g. ``http://127.0.0.1:10000/devstoreaccount1`` for
  Azurite; ``http://`` endpoints are allowed only when given explicitly).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from obstore.store import AzureStore

from strongroom.errors import BackendConfigError
from strongroom.storage.objectstore import (
    ObjectStoreBackend,
    build_backend,
    parse_bucket_url,
)

if TYPE_CHECKING:
    from obstore.store import AzureConfig

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""Azurite's well-known development account and key (public, documented by Microsoft)."""


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` pairs; values may themselves contain '=' (base64 keys do)."""
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise BackendConfigError(
                "AZURE_STORAGE_CONNECTION_STRING is malformed: expected Key=Value;... pairs"
            )
        fields[key.strip()] = value.strip()
    return fields


def _from_connection_string(text: str) -> AzureConfig:
    fields = parse_connection_string(text)
    if fields.get("UseDevelopmentStorage", "").lower() == "true":
        proxy = fields.get("DevelopmentStorageProxyUri", "http://127.0.0.1:10000")
        return {
            "account_name": AZURITE_ACCOUNT,
            "account_key": AZURITE_KEY,
            "endpoint": f"{proxy.rstrip('/')}/{AZURITE_ACCOUNT}",
        }
    account = fields.get("AccountName")
    if not account:
        raise BackendConfigError("AZURE_STORAGE_CONNECTION_STRING has no AccountName")
    protocol = fields.get("DefaultEndpointsProtocol", "https")
    suffix = fields.get("EndpointSuffix", "core.windows.net")
    endpoint = fields.get("BlobEndpoint") or f"{protocol}://{account}.blob.{suffix}"
    config: AzureConfig = {"account_name": account, "endpoint": endpoint.rstrip("/")}
    if fields.get("AccountKey"):
        config["account_key"] = fields["AccountKey"]
    elif fields.get("SharedAccessSignature"):
        config["sas_key"] = fields["SharedAccessSignature"].lstrip("?")
    else:
        raise BackendConfigError(
            "AZURE_STORAGE_CONNECTION_STRING has neither AccountKey nor SharedAccessSignature"
        )
    return config


def azure_config(env: Mapping[str, str]) -> AzureConfig:
    """Account, credential and endpoint from the environment (see the module docstring)."""
    connection = env.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection:
        return _from_connection_string(connection)
    account = env.get("AZURE_STORAGE_ACCOUNT")
    key = env.get("AZURE_STORAGE_KEY")
    sas = env.get("AZURE_STORAGE_SAS_TOKEN")
    if not account or not (key or sas):
        raise BackendConfigError(
            "no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT "
            "with AZURE_STORAGE_KEY (or AZURE_STORAGE_SAS_TOKEN)"
        )
    config: AzureConfig = {"account_name": account}
    if key:
        config["account_key"] = key
    elif sas:
        config["sas_key"] = sas.lstrip("?")
    endpoint = env.get("AZURE_STORAGE_ENDPOINT")
    if endpoint:
        config["endpoint"] = endpoint.rstrip("/")
    return config


def open_azure(url: str, env: Mapping[str, str] | None = None) -> ObjectStoreBackend:
    """A backend for ``azure://CONTAINER/PREFIX``; BackendConfigError if it cannot be built."""
    container, prefix = parse_bucket_url(url, "azure", "Azure")
    if "." in container or "--" in container:
        raise BackendConfigError(
            f"invalid Azure location {url!r}: container names have no '.' and no '--'"
        )
    config = azure_config(os.environ if env is None else env)
    return build_backend(
        url,
        prefix,
        config.get("endpoint"),
        lambda options, retry: AzureStore(
            container, config=config, client_options=options, retry_config=retry
        ),
    )
