"""Multi-head dot-product attention shaped for XLA's CPU backend, with a hand-written backward pass.

Three forms, picked per shape by `attention_path`:
- "whole" / "chunks": scores laid out keys-major, [B, H, keys, queries], so the softmax max reduces a
  non-minor axis, which XLA vectorises across the queries (the minor-axis reduction ran ~5x slower);
  the softmax denominator comes out of the value matmul (a column of ones appended to V), so the
  normalisation divides D columns instead of keys x queries scores; long sequences go in query chunks
  of at most SCORE_BLOCK scores (`lax.map`), which keeps a chunk's scores in cache and bounds the
  memory to one chunk (2-3x faster at 1024 tokens). At 32x32 latents self-attention had been most
  of the UNet's time; this is 3-6x faster than `jax.nn.dot_product_attention` there.
- "groups": a large batch goes through in groups of whole batch elements, each with query chunks of
  at least GROUP_QUERY_CHUNK (at 1024 tokens, 2 heads, a CFG batch of 8: 17 ms instead of 30 ms).
- "heads": wide heads over long sequences (SD1.5's self-attention at 64x64 and 32x32 latents) go one
  head at a time in chunks of HEAD_QUERY_CHUNK queries, as plain 2-D matmuls with the softmax over
  the keys: there the all-heads chunks had shrunk to 32 queries and ran at a third of the machine's
  speed (one attention at 4096 tokens, 8 heads of 40: 0.49-0.59 s -> 0.24-0.31 s).

The chunked forms carry their own VJP (`_chunked`): the forward keeps each query's log-sum-exp, and
the backward recomputes the scores chunk by chunk and forms dq, dk, dv from them, as flash-attention
does, instead of differentiating through `lax.map` (which kept every chunk's probabilities and
transposed the keys-major layout back and forth). Training at 256 px, self-attention over 1024
tokens, batch 8: forward + backward 102 ms -> 64 ms.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

# Attention scores per query chunk (float32 elements): 2 MiB, so a chunk's scores stay in the CPU
# caches between the matmul, the softmax and the weighted sum instead of streaming through memory.
SCORE_BLOCK = 1 << 19
MIN_QUERY_CHUNK = 32
# Query chunks shorter than this cost more in per-chunk overhead than they save in cache.
GROUP_QUERY_CHUNK = 128
# Head by head when head_dim x keys reaches HEAD_MIN_WORK (SD1.5: 160k at 64x64 latents, 80k at 32x32);
# below it (narrow heads, cross-attention to a prompt) the per-head loop's overhead loses.
HEAD_QUERY_CHUNK = 256
HEAD_MIN_WORK = 1 << 16


def attention_path(b: int, tq: int, tk: int, heads: int, head_dim: int) -> str:
    """Which form `dot_product_attention` takes: "whole", "chunks", "groups" or "heads"."""
    if head_dim * tk >= HEAD_MIN_WORK and tq > HEAD_QUERY_CHUNK:
        return "heads"
    group = SCORE_BLOCK // (heads * tk * GROUP_QUERY_CHUNK)  # 0: even one element needs short chunks
    if 1 <= group < b and b % group == 0 and SCORE_BLOCK // (b * heads * tk) < GROUP_QUERY_CHUNK <= tq:
        return "groups"
    return "whole" if _query_chunk(b, heads, tk) >= tq else "chunks"


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, heads: int) -> jax.Array:
    """Multi-head attention on [B, T, H*D] projections; softmax in float32 whatever the compute dtype."""
    b, tq, inner = q.shape
    tk, d = k.shape[1], inner // heads
    q, k, v = (x.reshape(b, x.shape[1], heads, d) for x in (q, k, v))
    q = q * jnp.asarray(1.0 / math.sqrt(d), q.dtype)
    path = attention_path(b, tq, tk, heads, d)
    if path == "heads":
        out = _attend_per_head(q, k, v)
    elif path == "groups":
        group = SCORE_BLOCK // (heads * tk * GROUP_QUERY_CHUNK)
        chunk = _query_chunk(group, heads, tk)
        grouped = [x.reshape(b // group, group, *x.shape[1:]) for x in (q, k, v)]
        out = jax.lax.map(lambda qkv: _chunked(*qkv, chunk), grouped).reshape(b, tq, heads, d)
    else:
        out = _chunked(q, k, v, _query_chunk(b, heads, tk))
    return out.reshape(b, tq, inner).astype(q.dtype)


def _query_chunk(b: int, heads: int, tk: int) -> int:
    return max(MIN_QUERY_CHUNK, SCORE_BLOCK // (b * heads * tk))


def _with_ones(v: jax.Array) -> jax.Array:
    """V with a column of ones: the value matmul then also sums the softmax weights."""
    return jnp.concatenate([v, jnp.ones((*v.shape[:-1], 1), v.dtype)], axis=-1)


def _pad_to_chunks(x: jax.Array, chunk: int, axis: int) -> tuple[jax.Array, int]:
    """Pad `axis` up to a multiple of `chunk`; returns the padded array and the number of chunks."""
    count = -(-x.shape[axis] // chunk)
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, count * chunk - x.shape[axis])
    return jnp.pad(x, widths), count


def _split(x: jax.Array, chunk: int) -> jax.Array:
    """[B, T, ...] -> [count, B, chunk, ...] (T padded to a multiple of chunk)."""
    padded, count = _pad_to_chunks(x, chunk, axis=1)
    return padded.reshape(x.shape[0], count, chunk, *x.shape[2:]).swapaxes(0, 1)


def _join(x: jax.Array, length: int) -> jax.Array:
    """Inverse of `_split`: [count, B, chunk, ...] -> [B, length, ...]."""
    return x.swapaxes(0, 1).reshape(x.shape[1], -1, *x.shape[3:])[:, :length]


def _attend(q: jax.Array, k: jax.Array, v_ones: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Scaled queries [B, Tq, H, D], keys [B, Tk, H, D], values with a ones column [B, Tk, H, D+1] ->
    output [B, Tq, H, D] (float32) and each query's log-sum-exp of its scores [B, Tq, H]."""
    scores = jnp.einsum("bkhd,bqhd->bhkq", k, q, preferred_element_type=jnp.float32)
    peak = jax.lax.stop_gradient(scores.max(axis=2, keepdims=True))
    weights = jnp.exp(scores - peak)
    out = jnp.einsum(
        "bkhe,bhkq->bheq", v_ones, weights.astype(v_ones.dtype), preferred_element_type=jnp.float32
    )
    total = out[:, :, -1:]
    lse = (peak + jnp.log(total))[:, :, 0].transpose(0, 2, 1)
    return (out[:, :, :-1] / total).transpose(0, 3, 1, 2), lse


def _forward(q: jax.Array, k: jax.Array, v: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
    v_ones = _with_ones(v)
    if chunk >= q.shape[1]:
        return _attend(q, k, v_ones)
    out, lse = jax.lax.map(lambda q_chunk: _attend(q_chunk, k, v_ones), _split(q, chunk))
    return _join(out, q.shape[1]), _join(lse, q.shape[1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _chunked(q: jax.Array, k: jax.Array, v: jax.Array, chunk: int) -> jax.Array:
    """Attention of scaled queries [B, Tq, H, D] over [B, Tk, H, D] in query chunks; float32 out."""
    return _forward(q, k, v, chunk)[0]


def _chunked_forward(q, k, v, chunk):
    out, lse = _forward(q, k, v, chunk)
    return out, (q, k, v, out, lse)


def _chunked_backward(chunk, residuals, d_out):
    q, k, v, out, lse = residuals
    # d(softmax) needs sum_d(dO * O) per query; padded query rows have dO = 0, so they add nothing.
    d_out = d_out.astype(jnp.float32)
    delta = (d_out * out).sum(axis=-1)

    def chunk_grads(carry, chunk_inputs):
        dk, dv = carry
        q_c, d_out_c, lse_c, delta_c = chunk_inputs  # [B, c, H, D], [B, c, H, D], [B, c, H], [B, c, H]
        scores = jnp.einsum("bkhd,bqhd->bhkq", k, q_c, preferred_element_type=jnp.float32)
        probs = jnp.exp(scores - lse_c.transpose(0, 2, 1)[:, :, None, :])
        dv = dv + jnp.einsum("bhkq,bqhd->bkhd", probs, d_out_c)
        d_probs = jnp.einsum("bkhd,bqhd->bhkq", v, d_out_c, preferred_element_type=jnp.float32)
        d_scores = probs * (d_probs - delta_c.transpose(0, 2, 1)[:, :, None, :])
        dk = dk + jnp.einsum("bhkq,bqhd->bkhd", d_scores, q_c)
        return (dk, dv), jnp.einsum("bhkq,bkhd->bqhd", d_scores, k)

    zeros = (jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32))
    if chunk >= q.shape[1]:
        (dk, dv), dq = chunk_grads(zeros, (q, d_out, lse, delta))
    else:
        chunks = tuple(_split(x, chunk) for x in (q, d_out, lse, delta))
        (dk, dv), dq = jax.lax.scan(chunk_grads, zeros, chunks)
        dq = _join(dq, q.shape[1])
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


_chunked.defvjp(_chunked_forward, _chunked_backward)


def _attend_per_head(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """One (batch element, head) at a time, queries in chunks: scores [chunk, keys], softmax over the
    keys. Scaled queries [B, Tq, H, D], keys and values [B, Tk, H, D] -> [B, Tq, H, D] float32."""
    b, tq, heads, d = q.shape
    flat = [x.transpose(0, 2, 1, 3).reshape(b * heads, x.shape[1], x.shape[3]) for x in (q, k, _with_ones(v))]
    padded, count = _pad_to_chunks(flat[0], HEAD_QUERY_CHUNK, axis=1)
    chunks = padded.reshape(b * heads, count, HEAD_QUERY_CHUNK, d)

    def one_head(head):
        q_chunks, k_head, v_head = head

        def one_chunk(q_chunk):
            scores = jnp.matmul(q_chunk, k_head.T, preferred_element_type=jnp.float32)
            weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=1, keepdims=True)))
            out = jnp.matmul(weights.astype(v_head.dtype), v_head, preferred_element_type=jnp.float32)
            return out[:, :-1] / out[:, -1:]

        return jax.lax.map(one_chunk, q_chunks).reshape(count * HEAD_QUERY_CHUNK, d)

    out = jax.lax.map(one_head, (chunks, flat[1], flat[2]))[:, :tq]
    return out.reshape(b, heads, tq, d).transpose(0, 2, 1, 3)
