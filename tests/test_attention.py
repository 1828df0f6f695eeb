"""`dot_product_attention` (models/layers.py) against textbook softmax attention, on every path it takes:
whole, query chunks, and groups of batch elements with query chunks (large CFG batches)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from controlsprint.models import layers


def _textbook(q, k, v, heads):
    b, tq, inner = q.shape
    d = inner // heads
    q, k, v = (x.reshape(b, x.shape[1], heads, d) for x in (q, k, v))
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, tq, inner)


def _path(b: int, tq: int, tk: int, heads: int) -> str:
    group = layers.SCORE_BLOCK // (heads * tk * layers.GROUP_QUERY_CHUNK)
    if (
        1 <= group < b
        and b % group == 0
        and layers.SCORE_BLOCK // (b * heads * tk) < layers.GROUP_QUERY_CHUNK <= tq
    ):
        return "groups"
    chunk = max(layers.MIN_QUERY_CHUNK, layers.SCORE_BLOCK // (b * heads * tk))
    return "whole" if chunk >= tq else "chunks"


@pytest.mark.parametrize(
    ("b", "tq", "tk", "heads", "path"),
    [
        (2, 64, 77, 2, "whole"),  # cross-attention to a prompt
        (2, 1024, 1024, 2, "chunks"),  # self-attention at 32x32 latents, one CFG pair
        (8, 1024, 1024, 2, "groups"),  # a CFG batch of 4 prompts
        (6, 1000, 1000, 2, "groups"),  # queries not a multiple of the chunk
        (7, 1024, 1024, 2, "chunks"),  # a batch the groups do not divide
        (2, 4096, 4096, 8, "chunks"),  # SD1.5 at 512 px: even one element needs short chunks
    ],
)
def test_matches_textbook_attention_on_every_path(b, tq, tk, heads, path):
    assert _path(b, tq, tk, heads) == path
    rng = np.random.default_rng(b * tq)
    q = jnp.asarray(rng.standard_normal((b, tq, heads * 16)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((b, tk, heads * 16)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((b, tk, heads * 16)), jnp.float32)
    ours = jax.jit(layers.dot_product_attention, static_argnums=3)(q, k, v, heads)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(_textbook(q, k, v, heads)), atol=2e-5, rtol=1e-5)
