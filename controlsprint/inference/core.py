"""`InferenceCore`: the one entry point for generation, shared by the CLI, eval, training validation
and every demo.

It holds a loaded pipeline's parameters on the devices, turns a `Request` into arrays (tokens, noise,
resized conditions), and runs the jitted sampling program of `program.py`, compiled once per
(shapes, options). With several devices the batch is sharded over a 1-D `data` mesh.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from controlsprint.errors import UserError
from controlsprint.inference import program
from controlsprint.inference.programs import ProgramCache
from controlsprint.inference.request import Request, validate
from controlsprint.models.io import Component
from controlsprint.models.pipeline import Pipeline
from controlsprint.schedulers import from_diffusers_config, make_scheduler

ProgressFn = Callable[[int, int], None]  # (steps done, steps total)


def _resize(image: np.ndarray, height: int, width: int, *, labels: bool = False) -> np.ndarray:
    from controlsprint.conditions.base import resize_labels, resize_rgb

    return (resize_labels if labels else resize_rgb)(image, (height, width))


class InferenceCore:
    def __init__(self, pipeline: Pipeline, *, devices: list | None = None):
        self.pipeline = pipeline
        self.schedule = from_diffusers_config(pipeline.scheduler_config)
        # This process's devices: in a multi-process run (validation during training) each process
        # generates on its own; a global mesh would turn every device_put into a collective.
        self.mesh = Mesh(np.array(devices or jax.local_devices()), ("data",))
        self._replicated = NamedSharding(self.mesh, PartitionSpec())
        self._batch_sharded = NamedSharding(self.mesh, PartitionSpec("data"))
        self._params = {
            "unet": jax.device_put(pipeline.unet.params, self._replicated),
            "vae": jax.device_put(pipeline.vae.params, self._replicated),
            "text_encoder": jax.device_put(pipeline.text_encoder.params, self._replicated),
        }
        # The video UNet's own layers; its spatial part is the UNet above (the same arrays).
        self._temporal = (
            jax.device_put(pipeline.temporal.params, self._replicated) if pipeline.temporal else None
        )
        self._controlnets: dict[str, tuple[Component, object]] = {}
        self._models_cache: dict[tuple, program.Models] = {}
        for name, component in pipeline.controlnets.items():
            self.add_controlnet(name, component)
        self._lock = threading.Lock()  # one generation at a time: it already uses every core
        self._progress: ProgressFn | None = None
        self._total_steps = 0
        self._jitted = jax.jit(program.sample, static_argnums=(0, 1, 2))
        self._programs = ProgramCache()

    # -- models -------------------------------------------------------------------------------------

    @property
    def controlnet_names(self) -> tuple[str, ...]:
        return tuple(self._controlnets)

    def add_controlnet(self, name: str, component: Component) -> None:
        unet = self.pipeline.unet.config
        if component.config.cross_attention_dim != unet.cross_attention_dim:
            raise UserError(
                f"ControlNet {name}: cross_attention_dim {component.config.cross_attention_dim} does not match "
                f"the base model's {unet.cross_attention_dim}"
            )
        params = jax.device_put(component.params, self._replicated)
        self._controlnets[name] = (component, params)
        self._models_cache.clear()

    def set_params(self, kind: str, params, name: str | None = None) -> None:
        """Swap in new weights of the same shapes (e.g. during training); compiled programs stay valid."""
        placed = jax.device_put(params, self._replicated)
        if kind == "temporal":
            self._temporal = placed
        elif kind == "controlnet":
            component, _ = self._controlnets[name]
            self._controlnets[name] = (component, placed)
        else:
            self._params[kind] = placed

    @property
    def default_guidance(self) -> float:
        """The model's CFG scale (its controlsprint.json "guidance_scale", else 7.5)."""
        return self.pipeline.default_guidance

    @property
    def native_size(self) -> int:
        return self.pipeline.unet.config.sample_size * self.pipeline.vae.config.downscale

    @property
    def size_multiple(self) -> int:
        """Pixel sizes must divide by the VAE's and the UNet's downsampling together."""
        return self.pipeline.vae.config.downscale * 2 ** (
            len(self.pipeline.unet.config.block_out_channels) - 1
        )

    @property
    def has_video(self) -> bool:
        return self._temporal is not None

    def _models(self, names: tuple[str, ...], video: bool = False) -> program.Models:
        if (names, video) not in self._models_cache:
            unet = self.pipeline.temporal.module() if video else self.pipeline.unet.module()
            self._models_cache[names, video] = program.Models(
                unet=unet,
                vae=self.pipeline.vae.module(),
                text_encoder=self.pipeline.text_encoder.module(),
                controlnets={n: self._controlnets[n][0].module() for n in names},
                scaling_factor=float(self.pipeline.vae.config.scaling_factor),
            )
        return self._models_cache[names, video]

    def _unet_params(self, options: program.Options):
        if not options.frames:
            return self._params["unet"]
        return {"spatial": self._params["unet"], **self._temporal}

    def _all_params(self, options: program.Options) -> dict:
        controlnets = {n: self._controlnets[n][1] for n in options.controlnets}
        return {**self._params, "unet": self._unet_params(options), "controlnets": controlnets}

    # -- requests -> arrays -------------------------------------------------------------------------

    def output_size(self, request: Request) -> tuple[int, int]:
        multiple = self.size_multiple
        if request.height and request.width:
            height, width = request.height, request.width
        elif request.init_image is not None or request.controls or request.hint_image is not None:
            source = next(
                image
                for image in (request.init_image, request.hint_image, *(c.image for c in request.controls))
                if image is not None
            )
            height, width = source.shape[:2]
            height, width = request.height or height, request.width or width
        else:
            height = request.height or self.native_size
            width = request.width or self.native_size
        if height % multiple or width % multiple:
            # Round explicit odd sizes down to what the UNet can process, never below one block.
            height, width = (
                max(multiple, height // multiple * multiple),
                max(multiple, width // multiple * multiple),
            )
        return height, width

    def _tokens(self, texts: tuple[str, ...], repeat: int) -> np.ndarray:
        return np.repeat(self.pipeline.tokenizer(list(texts)), repeat, axis=0)

    def _noise(self, request: Request, shape: tuple[int, ...]) -> np.ndarray:
        if request.latents is not None:
            if tuple(request.latents.shape) != shape:
                raise UserError(f"latents shape {tuple(request.latents.shape)} does not match {shape}")
            return np.asarray(request.latents, np.float32)
        # Image j's noise depends only on (seed, j): the first image is the same alone or in a batch.
        return np.asarray(_noise_for(request.seed, shape))

    def prepare(self, request: Request) -> tuple[program.Options, dict]:
        validate(request)
        unknown = [c.name for c in request.controls if c.name not in self._controlnets]
        if unknown:
            known = ", ".join(self.controlnet_names) or "none loaded"
            raise UserError(f"no ControlNet named '{unknown[0]}' (available: {known})")
        if request.is_video and not self.has_video:
            raise UserError(
                "this model has no temporal layers (a temporal/ folder): video needs a video model"
            )
        height, width = self.output_size(request)
        downscale = self.pipeline.vae.config.downscale
        latent_shape = (
            request.batch,
            *((request.frames,) if request.is_video else ()),
            height // downscale,
            width // downscale,
            self.pipeline.vae.config.latent_channels,
        )
        negatives = request.negative_prompts * (
            len(request.prompts) if len(request.negative_prompts) == 1 else 1
        )
        inpaint_unet = self.pipeline.unet.config.in_channels == 9
        if inpaint_unet and request.mode != "inpaint":
            raise UserError("this model's UNet is an inpainting UNet: give --init-image and --mask")
        controls = request.controls
        inputs = {
            "ids": self._tokens(request.prompts, request.num_images),
            "negative_ids": self._tokens(negatives, request.num_images),
            "noise": self._noise(request, latent_shape),
            "conditions": tuple(
                (_resize(c.image, height, width).astype(np.float32) / 255.0)[None] for c in controls
            ),
            "scales": np.array([c.scale for c in controls], np.float32),
            "starts": np.array([c.start for c in controls], np.float32),
            "ends": np.array([c.end for c in controls], np.float32),
            "guidance": np.float32(request.guidance),
            "start_index": np.int32(0),
        }
        if request.mode != "txt2img":
            sched = make_scheduler(request.scheduler, self.schedule, request.steps)
            # a video's img2img starts every frame from its hint
            strength, source = (
                (request.hint_strength, request.hint_image)
                if request.is_video
                else (request.strength, request.init_image)
            )
            inputs["start_index"] = np.int32(sched.start_index(strength))
            inputs["init"] = (_resize(source, height, width).astype(np.float32) / 127.5 - 1.0)[None]
        hint = request.hint_image is not None
        if hint:
            inputs["hint"] = (_resize(request.hint_image, height, width).astype(np.float32) / 127.5 - 1.0)[
                None
            ]
        if request.mode == "inpaint":
            mask = request.mask if request.mask.ndim == 2 else request.mask.max(axis=-1)
            inputs["mask"] = (_resize(mask, height, width, labels=True) >= 128).astype(np.float32)[
                None, ..., None
            ]
        options = program.Options(
            mode=request.mode,
            cfg=request.guidance > 1.0,
            controlnets=tuple(c.name for c in controls),
            guess_mode=request.guess_mode,
            inpaint_unet=inpaint_unet,
            frames=request.frames,
            hint=hint and bool(self.pipeline.temporal.config.hint_concat),
            lock_first_frame=hint and request.lock_first_frame,
        )
        return options, inputs

    # -- running --------------------------------------------------------------------------------------

    def _on_step(self, i) -> None:
        if self._progress is not None:
            self._progress(int(i) + 1, self._total_steps)

    def _place(self, inputs: Mapping) -> dict:
        batch = inputs["noise"].shape[0]
        shard = self._batch_sharded if batch % self.mesh.size == 0 else self._replicated
        placed = {}
        for key, value in inputs.items():
            by_batch = key in ("ids", "negative_ids", "noise")
            placed[key] = jax.device_put(value, shard if by_batch else self._replicated)
        return placed

    def generate(self, request: Request, progress: ProgressFn | None = None) -> np.ndarray:
        """Images [B, H, W, 3] uint8 for `request` (B = prompts x num_images); clips [B, F, H, W, 3] for
        a video request.

        Without `progress` the program comes from the program cache (traced once per machine, see
        `programs.py`); with it, the program calls back to Python every step, which ties it to this
        process, so it is traced in each process (its compiled form still comes from XLA's cache).
        """
        options, inputs = self.prepare(request)
        sched = jax.device_put(
            make_scheduler(request.scheduler, self.schedule, request.steps), self._replicated
        )
        params = self._all_params(options)
        models = self._models(options.controlnets, bool(options.frames))
        with self._lock:
            placed = self._place(inputs)
            if progress is None:
                leaves, tree = jax.tree_util.tree_flatten((params, sched, placed))

                def flat_sample(*leaves):
                    return program.sample(models, options, None, *jax.tree_util.tree_unflatten(tree, leaves))

                return np.asarray(self._programs(self._describe(options, tree), flat_sample, leaves))
            self._progress = progress
            self._total_steps = request.steps
            try:
                return np.asarray(self._jitted(models, options, self._on_step, params, sched, placed))
            finally:
                self._progress = None

    def _describe(self, options: program.Options, tree) -> dict:
        """What, besides the arguments' shapes, decides the program: options, argument tree, configs."""
        configs = {
            "unet": self.pipeline.unet.config,
            "vae": self.pipeline.vae.config,
            "text_encoder": self.pipeline.text_encoder.config,
            **{f"controlnet {n}": self._controlnets[n][0].config for n in options.controlnets},
        }
        if options.frames:
            configs["temporal"] = self.pipeline.temporal.config
        return {"options": repr(options), "tree": str(tree), **{k: repr(v) for k, v in configs.items()}}

    def lower(self, request: Request):
        """The lowered program for `request` (for cost analysis and ahead-of-time compilation)."""
        options, inputs = self.prepare(request)
        sched = make_scheduler(request.scheduler, self.schedule, request.steps)
        models = self._models(options.controlnets, bool(options.frames))
        return self._jitted.lower(
            models, options, None, self._all_params(options), sched, self._place(inputs)
        )


@functools.partial(jax.jit, static_argnums=(1,))
def _noise_batch(seed, shape):
    keys = jax.vmap(lambda j: jax.random.fold_in(jax.random.key(seed), j))(jnp.arange(shape[0]))
    return jax.vmap(lambda k: jax.random.normal(k, shape[1:], jnp.float32))(keys)


def _noise_for(seed: int, shape: tuple[int, ...]) -> jax.Array:
    return _noise_batch(np.uint32(seed), shape)
