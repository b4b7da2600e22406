"""HTTP routes, one module per audience: devices, operators, the repository, operations."""
