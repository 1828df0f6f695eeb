"""`dot_product_attention` (models/attention.py) against textbook softmax attention, on every path it takes:
whole, query chunks, groups of batch elements with query chunks (large CFG batches), and head by head
(wide heads over long sequences)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from controlsprint.models import attention


def _textbook(q, k, v, heads):
    b, tq, inner = q.shape
    d = inner // heads
    q, k, v = (x.reshape(b, x.shape[1], heads, d) for x in (q, k, v))
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, tq, inner)


@pytest.mark.parametrize(
    ("b", "tq", "tk", "heads", "head_dim", "path"),
    [
        (2, 64, 77, 2, 16, "whole"),  # cross-attention to a prompt
        (2, 4096, 77, 8, 40, "chunks"),  # SD1.5's cross-attention at 512 px
        (2, 1024, 1024, 2, 16, "chunks"),  # self-attention at 32x32 latents, one CFG pair
        (8, 1024, 1024, 2, 16, "groups"),  # a CFG batch of 4 prompts
        (6, 1000, 1000, 2, 16, "groups"),  # queries not a multiple of the chunk
        (7, 1024, 1024, 2, 16, "chunks"),  # a batch the groups do not divide
        (2, 4096, 4096, 8, 8, "chunks"),  # long but narrow heads: even one element needs short chunks
        (2, 4096, 4096, 8, 40, "heads"),  # SD1.5's self-attention at 512 px
        (1, 1000, 1000, 2, 80, "heads"),  # queries not a multiple of HEAD_QUERY_CHUNK
    ],
)
def test_matches_textbook_attention_on_every_path(b, tq, tk, heads, head_dim, path):
    assert attention.attention_path(b, tq, tk, heads, head_dim) == path
    rng = np.random.default_rng(b * tq)
    q = jnp.asarray(rng.standard_normal((b, tq, heads * head_dim)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((b, tk, heads * head_dim)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((b, tk, heads * head_dim)), jnp.float32)
    ours = jax.jit(attention.dot_product_attention, static_argnums=3)(q, k, v, heads)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(_textbook(q, k, v, heads)), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("b", "tq", "tk", "heads", "head_dim", "path", "dtype"),
    [
        (2, 64, 77, 2, 16, "whole", jnp.float32),
        (2, 1000, 1000, 2, 16, "chunks", jnp.float32),  # queries not a multiple of the chunk
        (6, 1000, 1000, 2, 16, "groups", jnp.float32),
        (1, 1000, 1000, 2, 80, "heads", jnp.float32),  # differentiated through lax.map, no own VJP
        (2, 1024, 1024, 2, 16, "chunks", jnp.bfloat16),
    ],
)
def test_gradients_match_textbook_attention(b, tq, tk, heads, head_dim, path, dtype):
    """The chunked forms' hand-written backward (flash-attention style) against autodiff of the
    textbook form: dq, dk and dv for a random output cotangent."""
    assert attention.attention_path(b, tq, tk, heads, head_dim) == path
    rng = np.random.default_rng(tq + heads)
    q, k, v = (jnp.asarray(rng.standard_normal((b, t, heads * head_dim)), dtype) for t in (tq, tk, tk))
    cotangent = jnp.asarray(rng.standard_normal((b, tq, heads * head_dim)), jnp.float32)

    def grads(fn):
        loss = lambda q, k, v: (fn(q, k, v, heads).astype(jnp.float32) * cotangent).sum()  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)

    ours = grads(attention.dot_product_attention)
    reference = grads(lambda q, k, v, h: _textbook(*(x.astype(jnp.float32) for x in (q, k, v)), h))
    tolerance = 2e-2 if dtype == jnp.bfloat16 else 1e-5
    for name, mine, theirs in zip("qkv", ours, reference, strict=True):
        mine, theirs = np.asarray(mine, np.float32), np.asarray(theirs)
        scale = np.abs(theirs).max()
        assert np.abs(mine - theirs).max() <= tolerance * scale, f"d{name}"
