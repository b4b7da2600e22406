"""TLS verification for every edgeship HTTPS client: the system store, or one pinned CA."""

from __future__ import annotations

import ssl


def verify_for(ca: str | None) -> ssl.SSLContext | bool:
    """httpx's ``verify=``: an SSL context trusting only ``ca`` when given (httpx deprecated paths)."""
    return ssl.create_default_context(cafile=ca) if ca else True
