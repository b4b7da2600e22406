"""/repo/: TUF metadata, manifests and blobs with Range, ETag, Content-Length; resume; abuse."""

from __future__ import annotations

import base64

from tests.server.conftest import Fleet


def test_blob_headers_and_ranges(fleet: Fleet) -> None:
    d = fleet.enroll()
    path = f"/repo/blobs/sha256/{fleet.blob_hex}"
    with fleet.anon() as c:
        r = c.get(path, headers=d.auth)
        assert r.status_code == 200 and r.content == fleet.blob
        assert r.headers["content-length"] == str(len(fleet.blob))
        assert r.headers["etag"] == f'"{fleet.blob_hex}"' and r.headers["accept-ranges"] == "bytes"
        r = c.get(path, headers={**d.auth, "range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == fleet.blob[10:20]
        assert r.headers["content-range"] == f"bytes 10-19/{len(fleet.blob)}"
        r = c.get(path, headers={**d.auth, "range": f"bytes={len(fleet.blob) + 5}-"})
        assert r.status_code == 416
        head = c.head(path, headers=d.auth)
        assert head.status_code == 200 and head.headers["content-length"] == str(len(fleet.blob)) and head.content == b""


def test_download_resumes_after_a_cut(fleet: Fleet) -> None:
    d = fleet.enroll()
    path = f"/repo/blobs/sha256/{fleet.blob_hex}"
    half = len(fleet.blob) // 2
    got = bytearray()
    with fleet.anon() as c:
        with c.stream("GET", path, headers=d.auth) as r:
            etag = r.headers["etag"]
            for chunk in r.iter_bytes(65536):
                got += chunk
                if len(got) >= half:
                    break  # the connection is dropped here, halfway
        assert len(fleet.blob) > len(got) >= half
        r = c.get(path, headers={**d.auth, "range": f"bytes={len(got)}-", "if-range": etag})
        assert r.status_code == 206
        got += r.content
    assert bytes(got) == fleet.blob


def test_metadata_and_manifests_are_served(fleet: Fleet) -> None:
    d = fleet.enroll()
    with fleet.anon() as c:
        ts = c.get("/repo/metadata/timestamp.json", headers=d.auth)
        assert ts.status_code == 200 and ts.json()["signed"]["_type"] == "timestamp"
        assert ts.headers["cache-control"] == "no-cache" and ts.headers["content-type"] == "application/json"
        assert c.get("/repo/metadata/1.root.json", headers=d.auth).json()["signed"]["_type"] == "root"
        manifest = c.get("/repo/releases/app/1.0.0.json", headers=d.auth)
        assert manifest.status_code == 200 and manifest.json()["name"] == "app"
        # Credentials in the URL (Basic) work too, for TUF clients that cannot set headers.
        basic = base64.b64encode(f"{d.id}:{d.secret}".encode()).decode()
        assert c.get("/repo/metadata/timestamp.json", headers={"authorization": f"Basic {basic}"}).status_code == 200


def test_repo_refuses_strangers_traversal_and_unknown_digests(fleet: Fleet) -> None:
    d = fleet.enroll()
    with fleet.anon() as c:
        assert c.get("/repo/metadata/timestamp.json").status_code == 401
        bad = {"authorization": "Basic " + base64.b64encode(f"{d.id}:wrong".encode()).decode()}
        assert c.get("/repo/metadata/timestamp.json", headers=bad).status_code == 401
        for path in (
            "/repo/blobs/sha256/" + "0" * 64,  # well-formed, not stored
            "/repo/blobs/sha256/XYZ",
            "/repo/metadata/%2e%2e%2f%2e%2e%2fedgeship.db",
            "/repo/releases/app/..%2F..%2F..%2Fkeys%2Ftimestamp.pem",
            "/repo/keys/timestamp.pem",
            "/repo/metadata/../../keys/snapshot.pem",
        ):
            r = c.get(path, headers=d.auth)
            assert r.status_code == 404, path
            assert b"PRIVATE KEY" not in r.content
