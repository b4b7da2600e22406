"""Signatures and TUF metadata: the operator-side repository and the device-side verifier."""

from edgeship.trust.client import ReleaseVerifier, VerifiedRelease
from edgeship.trust.repository import Expiry, KeyRing, Repository

__all__ = ["Expiry", "KeyRing", "ReleaseVerifier", "Repository", "VerifiedRelease"]
