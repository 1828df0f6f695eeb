"""CLIP text encoder (transformers' CLIPTextModel) in Flax.

Causal pre-norm transformer over token + position embeddings; Stable Diffusion conditions on the
final-layer-normed hidden states of all 77 positions. Parameter names mirror transformers'
(`text_model.encoder.layers.0.self_attn.q_proj` -> `text_model/encoder/layers_0/self_attn/q_proj`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from controlsprint.models.configs import CLIPTextConfig
from controlsprint.models.layers import layer_norm


def _activation(name: str):
    if name == "quick_gelu":
        return lambda x: x * jax.nn.sigmoid(1.702 * x)
    return lambda x: jax.nn.gelu(x, approximate=False)


class CLIPAttention(nn.Module):
    config: CLIPTextConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        cfg = self.config
        b, t, d = x.shape
        heads = cfg.num_attention_heads
        q, k, v = (
            nn.Dense(d, dtype=self.dtype, name=name)(x).reshape(b, t, heads, d // heads)
            for name in ("q_proj", "k_proj", "v_proj")
        )
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, scale=(d // heads) ** -0.5)
        return nn.Dense(d, dtype=self.dtype, name="out_proj")(out.reshape(b, t, d))


class CLIPMLP(nn.Module):
    config: CLIPTextConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Dense(self.config.intermediate_size, dtype=self.dtype, name="fc1")(x)
        return nn.Dense(self.config.hidden_size, dtype=self.dtype, name="fc2")(
            _activation(self.config.hidden_act)(h)
        )


class CLIPEncoderLayer(nn.Module):
    config: CLIPTextConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        cfg = self.config
        x = x + CLIPAttention(cfg, self.dtype, name="self_attn")(
            layer_norm(cfg.layer_norm_eps, "layer_norm1")(x), mask
        )
        return x + CLIPMLP(cfg, self.dtype, name="mlp")(layer_norm(cfg.layer_norm_eps, "layer_norm2")(x))


class CLIPEmbeddings(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, input_ids: jax.Array) -> jax.Array:
        cfg = self.config
        tokens = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="token_embedding")(input_ids)
        positions = nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, name="position_embedding")(
            jnp.arange(input_ids.shape[1])[None]
        )
        return tokens + positions


class CLIPEncoder(nn.Module):
    config: CLIPTextConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.layers = [
            CLIPEncoderLayer(self.config, self.dtype) for _ in range(self.config.num_hidden_layers)
        ]

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class CLIPTextTransformer(nn.Module):
    config: CLIPTextConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.embeddings = CLIPEmbeddings(self.config)
        self.encoder = CLIPEncoder(self.config, self.dtype)
        self.final_layer_norm = layer_norm(self.config.layer_norm_eps)

    def __call__(self, input_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        seq = input_ids.shape[1]
        causal = jnp.tril(jnp.ones((seq, seq), dtype=bool))[None, None]
        hidden = self.encoder(self.embeddings(input_ids).astype(self.dtype), causal)
        hidden = self.final_layer_norm(hidden).astype(jnp.float32)
        # Pooled output: the state at the first end-of-text token (the highest id in old vocabularies).
        if self.config.eos_token_id == 2:
            eos = jnp.argmax(input_ids, axis=-1)
        else:
            eos = jnp.argmax(input_ids == self.config.eos_token_id, axis=-1)
        pooled = jnp.take_along_axis(hidden, eos[:, None, None], axis=1)[:, 0]
        return hidden, pooled


class CLIPTextModel(nn.Module):
    """Returns (last_hidden_state [B, T, D], pooled [B, D]) for token ids [B, T]."""

    config: CLIPTextConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.text_model = CLIPTextTransformer(self.config, self.dtype)

    def __call__(self, input_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.text_model(input_ids)
