"""Model file headers, one reader per format: everything that needs a header asks here.

``read_header`` parses a GGUF header (metadata and tensor infos, long arrays skipped);
``read_facts`` turns it into the ``ModelFacts`` of an LLM (layers, heads, vocabulary,
context, chat template) that the memory estimator and the runtime's loader both take.
"""

from edgeship.formats.facts import ModelFacts, model_facts, read_facts
from edgeship.formats.gguf import GGUFHeader, TensorInfo, read_header

__all__ = ["GGUFHeader", "ModelFacts", "TensorInfo", "model_facts", "read_facts", "read_header"]
