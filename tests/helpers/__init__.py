"""Fixtures' building blocks shared by test suites (import as ``tests.helpers.…``)."""
