"""Release manifests and bundle building."""

from edgeship.release.manifest import Component, ComponentKind, HealthSuite, Manifest, Requirements

__all__ = ["Component", "ComponentKind", "HealthSuite", "Manifest", "Requirements"]
