"""On-device learning: fine-tune a model on local text and ship the change as a delta.

The data is read from a local directory and never leaves the device; what leaves is a
`WeightUpdate`: an edgeship delta against the base model file plus a few numbers.
"""
