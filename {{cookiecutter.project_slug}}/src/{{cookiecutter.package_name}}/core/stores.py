"""Store URLs as fsspec reads them: the one place that knows DVC's and fsspec's spellings differ.

Standard library only: the service ships it (log shipping), the pipeline reads with it (the
shipped log, the label files).
"""

# DVC spells Azure's scheme azure:// (params.yaml values are DVC dependencies), fsspec's adlfs az://.
FSSPEC_SCHEMES = {"azure": "az"}


def fsspec_url(url: str) -> str:
    """`url` with the scheme fsspec knows it by (azure:// is az://); a plain path unchanged."""
    scheme, separator, rest = url.partition("://")
    return FSSPEC_SCHEMES.get(scheme, scheme) + separator + rest
