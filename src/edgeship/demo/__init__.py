"""`edgeship demo`: the product's story, run on embedded defaults with generated models."""
