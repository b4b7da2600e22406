"""Content-addressed blob storage: every blob is stored once, under its sha256."""

from edgeship.store.digest import Digest, hash_file
from edgeship.store.local import LocalBlobStore

__all__ = ["Digest", "LocalBlobStore", "hash_file"]
