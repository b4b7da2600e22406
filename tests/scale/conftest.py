"""Fixtures for the scale-out tests: one database several (simulated) instances share."""

from __future__ import annotations

from tests.helpers.seaweedfs import seaweedfs  # noqa: F401 - the S3 fixture, for the multi-instance test
from tests.helpers.server import fresh_database_url  # noqa: F401 - the database several instances share
