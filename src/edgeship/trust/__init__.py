"""Signatures and TUF metadata: the operator-side repository (``trust.repository``) and the
device-side verifier (``trust.client``); imported by module, so a command loads only the side it uses."""
