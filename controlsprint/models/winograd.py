"""3x3 "same" convolutions, stride 1, by Winograd's minimal filtering F(2x2, 3x3) where it pays on CPU.

Every 2x2 block of outputs is computed from a 4x4 tile of input in a transformed space where the
convolution becomes 16 independent matrix products, [tiles, C] x [C, K], one per tile position: 4
multiplications per output and input channel instead of 9 (2.25x fewer). The transforms around them
(B^T d B for input tiles, G g G^T for the kernel, A^T m A back to outputs) have coefficients 0, +-1
and 1/2, so in float32 the result stays within a few 1e-6 of the direct convolution's (the larger
tiles of F(4x4, 3x3) would save more but lose an order of magnitude of precision).

Why here: XLA's CPU convolution already runs at the machine's peak, so fewer multiplications is the
only way left to make SD1.5's UNet faster. Measured on 2 cores (x86_64, AVX-512), direct vs Winograd:
64x64x320 -> 320 36 -> 20 ms; 32x32x640 -> 640 37 -> 22 ms; 64x64x640 -> 640 146 -> 99 ms. The 16
products stay separate dots with separate operands (XLA runs them side by side); stacking them into
one batched dot put the input transform behind a concatenation that cost more than it saved.

Used only where it measured faster: float32, even height and width, at least MIN_CHANNELS channels in
and out, and between MIN_PIXELS and MAX_PIXELS output pixels (batch x height x width): below, the
kernel transform (16 x C x K values per call) outweighs the saving; above, the transformed input no
longer fits the caches (512x512x128: 455 ms direct, 548 ms Winograd). The backward pass is the direct
convolution's (a custom VJP), so training gradients are exactly what they were.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

MIN_CHANNELS = 64
MIN_PIXELS = 1024
MAX_PIXELS = 1 << 16

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def conv3x3_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """[N, H, W, C] (*) [3, 3, C, K] with zero padding 1 and stride 1 -> [N, H, W, K]."""
    if use_winograd(x.shape, kernel.shape, x.dtype):
        return _winograd_conv(x, kernel)
    return _direct(x, kernel)


def use_winograd(shape: tuple[int, ...], kernel_shape: tuple[int, ...], dtype) -> bool:
    """Whether `conv3x3_same` takes the Winograd form for this input shape, kernel shape and dtype."""
    if len(shape) != 4 or tuple(kernel_shape[:2]) != (3, 3) or jnp.dtype(dtype) != jnp.float32:
        return False
    n, h, w, c = shape
    pixels = n * h * w
    return (
        h % 2 == 0
        and w % 2 == 0
        and min(c, kernel_shape[3]) >= MIN_CHANNELS
        and MIN_PIXELS <= pixels <= MAX_PIXELS
    )


def _direct(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DIMENSIONS)


def _input_rows(x: jax.Array, axis: int) -> list[jax.Array]:
    """B^T along `axis` of a zero-padded input of length 2t + 2: four arrays of length t, where tile
    i reads samples 2i..2i+3 = (even[i], odd[i], even[i+1], odd[i+1])."""
    tiles = x.shape[axis] // 2 - 1
    pairs = x.reshape(*x.shape[:axis], tiles + 1, 2, *x.shape[axis + 1 :])

    def sample(parity: int, shift: int) -> jax.Array:
        column = lax.index_in_dim(pairs, parity, axis + 1, keepdims=False)
        return lax.slice_in_dim(column, shift, shift + tiles, axis=axis)

    even, odd, next_even, next_odd = sample(0, 0), sample(1, 0), sample(0, 1), sample(1, 1)
    return [even - next_even, odd + next_even, next_even - odd, odd - next_odd]


def _kernel_rows(kernel: jax.Array, axis: int) -> list[jax.Array]:
    """G along `axis` (length 3 -> four arrays): g0, (g0 + g1 + g2)/2, (g0 - g1 + g2)/2, g2."""
    g0, g1, g2 = (lax.index_in_dim(kernel, i, axis, keepdims=False) for i in range(3))
    return [g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2]


def _winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    k = kernel.shape[3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    tiles = [v.reshape(-1, c) for row in _input_rows(padded, 1) for v in _input_rows(row, 2)]
    filters = [u for row in _kernel_rows(kernel, 0) for u in _kernel_rows(row, 0)]
    products = [(v @ u).reshape(n, h // 2, w // 2, k) for v, u in zip(tiles, filters, strict=True)]
    m = [products[4 * p : 4 * p + 4] for p in range(4)]
    # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] on both axes; outputs interleave as [n, h/2, 2, w/2, 2, k].
    top = [m[0][q] + m[1][q] + m[2][q] for q in range(4)]
    bottom = [m[1][q] - m[2][q] - m[3][q] for q in range(4)]
    rows = [jnp.stack([r[0] + r[1] + r[2], r[1] - r[2] - r[3]], axis=3) for r in (top, bottom)]
    return jnp.stack(rows, axis=2).reshape(n, h, w, k)


@jax.custom_vjp
def _winograd_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return _winograd(x, kernel)


def _winograd_forward(x, kernel):
    return _winograd(x, kernel), (x, kernel)


def _direct_backward(residuals, d_out):
    x, kernel = residuals
    return jax.vjp(_direct, x, kernel)[1](d_out)


_winograd_conv.defvjp(_winograd_forward, _direct_backward)
