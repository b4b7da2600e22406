"""Byte sources for python-tuf's ngclient: a local directory (file://) or HTTP(S)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface

from edgeship.pinning import verify_for
from edgeship.store.digest import CHUNK


class LocalFetcher(FetcherInterface):
    """Reads file:// URLs; a missing file is a 404 so ngclient's root walk stops normally."""

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = Path(unquote(urlparse(url).path))
        if not path.is_file():
            raise DownloadHTTPError(f"{path} not found", 404)
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                yield block


class HttpFetcher(FetcherInterface):
    """Streams HTTP(S) responses with httpx; ``verify`` may name a pinned CA file."""

    def __init__(self, *, verify: str | bool = True, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        tls = verify_for(verify) if isinstance(verify, str) else verify
        self._client = httpx.Client(verify=tls, timeout=timeout, headers=headers or {}, follow_redirects=True)

    def _fetch(self, url: str) -> Iterator[bytes]:
        request = self._client.build_request("GET", url)
        response = self._client.send(request, stream=True)
        if response.status_code >= 400:
            response.close()
            raise DownloadHTTPError(f"GET {url} answered {response.status_code}", response.status_code)
        return self._chunks(response)

    @staticmethod
    def _chunks(response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_bytes(CHUNK)
        finally:
            response.close()

    def close(self) -> None:
        self._client.close()


def fetcher_for(url: str, *, ca: str | None = None) -> FetcherInterface:
    if url.startswith("file://"):
        return LocalFetcher()
    return HttpFetcher(verify=ca or True)
