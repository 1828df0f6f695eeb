"""Limits on input images, importable without numpy or Pillow (command lines build their --help from them).

`controlsprint.imageio` re-exports `DEFAULT_MAX_PIXELS`; import it from here where only the number is
needed, so `controlsprint --help` stays instant.
"""

# 8192 x 8192. Far above any ControlNet training image, far below what exhausts memory when decoded
# (a 64 MP RGB image is 192 MiB as uint8; Pillow's own bomb guard only errors at ~179 MP).
DEFAULT_MAX_PIXELS = 8192 * 8192
