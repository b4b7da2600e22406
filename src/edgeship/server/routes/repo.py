"""``/repo/…``: the TUF repository, streamed from storage with Range, ETag and Content-Length
(or, with ``--s3-presign``, blobs and deltas redirected to a short-lived S3 URL)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from edgeship.errors import NotFoundError
from edgeship.server.auth import require_reader
from edgeship.server.context import ServerContext, context
from edgeship.server.credentials import Credential
from edgeship.server.routes.deps import repo_credential
from edgeship.server.storage import repo_key

router = APIRouter(tags=["repository"])

# Metadata that changes in place must be revalidated; everything else is immutable by name.
_MUTABLE = {"metadata/timestamp.json", "metadata/root.json"}


_FILE = {"content": {"application/json": {}, "application/octet-stream": {}}}
_CONTENT = {200: {**_FILE, "description": "the file"}, 206: {**_FILE, "description": "the requested byte range"}}


# Two routes, not one api_route with two methods: each OpenAPI operation needs its own ID.
@router.head("/repo/{path:path}", response_class=Response, responses=_CONTENT, operation_id="repo_file_head")
@router.get("/repo/{path:path}", response_class=Response, responses=_CONTENT, operation_id="repo_file")
def repo_file(path: str, request: Request, cred: Credential = Depends(repo_credential), ctx: ServerContext = Depends(context)) -> Response:
    key = repo_key(path)
    with ctx.db.read() as session:
        require_reader(session, cred)
        if key.startswith("metadata/"):
            ctx.repo.refresh(session)  # another instance may have signed newer metadata
    stored = ctx.storage.locate(key)
    if stored is None:
        raise NotFoundError(f"/repo/{key} is not on this server", hint="is the release pushed with `edgeship release push --server`?")
    headers = {"cache-control": "no-cache" if key in _MUTABLE else "private, max-age=31536000, immutable"}
    if key.startswith(("blobs/", "deltas/")):
        # The content digest (for a delta: source and result digests) names the bytes exactly.
        headers["etag"] = '"' + ".".join(key.split("/")[2:]) + '"'
        media_type = "application/octet-stream"
    else:
        media_type = "application/json"
    return stored.response(request, headers, media_type)
