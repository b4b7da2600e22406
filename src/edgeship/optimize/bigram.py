"""A llama GGUF that carries a known language model, for measuring what quantization costs.

A model with random weights predicts every token almost equally (perplexity ~ vocabulary
size), so quantizing it changes nothing measurable. This model instead knows a Markov
chain over a few letters: the token embeddings are random unit-RMS vectors and the output
head is solved in closed form so that, for each letter, the logits are the chain's
log-probabilities of the next letter. The transformer blocks keep small random weights
(they perturb the residual stream a little). Text sampled from the same chain then has a
perplexity near the chain's entropy rate, and quantization noise in the embeddings and
the head shows up as higher perplexity and as KL divergence from the F32 model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.samples.llama import TinyLlama, write_tiny_llama

BYTE_TOKEN_OFFSET = 3  # <unk> <s> </s>, then one token per byte
UNLIKELY = -12.0  # logit of a token the chain never produces after this one


@dataclass(frozen=True)
class Chain:
    """A Markov chain over ``alphabet``: each letter has ``fanout`` likely successors."""

    alphabet: str = "abcdefghijklmnop"
    fanout: int = 4
    seed: int = 0

    def matrix(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        n = len(self.alphabet)
        p = np.full((n, n), 1e-3)
        for i in range(n):
            nxt = rng.choice(n, self.fanout, replace=False)
            p[i, nxt] += rng.dirichlet(np.ones(self.fanout) * 0.7)
        return p / p.sum(axis=1, keepdims=True)

    def entropy_rate(self) -> float:
        """Nats per letter of the stationary chain: the best perplexity is exp(this)."""
        p = self.matrix()
        vals, vecs = np.linalg.eig(p.T)
        pi = np.real(vecs[:, np.argmin(np.abs(vals - 1))])
        pi = pi / pi.sum()
        return float(-(pi[:, None] * p * np.log(p)).sum())

    def sample(self, n: int, seed: int = 1) -> str:
        rng = np.random.default_rng(seed)
        p = self.matrix()
        state = 0
        out = []
        for _ in range(n):
            state = int(rng.choice(len(self.alphabet), p=p[state]))
            out.append(self.alphabet[state])
        return "".join(out)


def chain_weights(spec: TinyLlama, chain: Chain) -> dict[str, np.ndarray]:
    """The embeddings and output head that make ``spec``'s model predict ``chain``."""
    rng = np.random.default_rng(spec.seed + 1)
    emb = rng.standard_normal((spec.n_vocab, spec.n_embd)).astype(np.float32)  # unit RMS rows
    letters = [BYTE_TOKEN_OFFSET + b for b in chain.alphabet.encode()]
    hidden = emb[letters]  # what the final RMS norm sees, up to the blocks' small perturbation
    logp = np.full((spec.n_vocab, len(letters)), UNLIKELY, np.float64)
    logp[letters, :] = np.log(chain.matrix()).T  # logp[next token, current letter]
    head = logp @ np.linalg.pinv(hidden.T.astype(np.float64))  # head @ hidden.T == logp
    return {"token_embd.weight": emb, "output.weight": head.astype(np.float32)}


def write_chain_model(path: Path, spec: TinyLlama, chain: Chain = Chain()) -> Path:
    """Write the F32 GGUF of ``spec`` that predicts ``chain`` (see the module docstring)."""
    return write_tiny_llama(path, spec, weights=chain_weights(spec, chain))
