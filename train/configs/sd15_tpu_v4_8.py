"""Stable Diffusion 1.5 ControlNet at 512 px on a TPU v4-8 (4 chips), the sprint's setup done the JAX way.

    # every worker of the slice runs the same command (jax.distributed finds the pod by itself):
    gcloud compute tpus tpu-vm ssh my-v4-8 --worker=all --command "cd controlsprint && \\
      .venv/bin/controlsprint train sd15-tpu-v4-8 \\
        --set model.base=/data/stable-diffusion-v1-5 --set data.path=/data/canny-512"

model.base must be a local diffusers-layout SD1.5 folder (safetensors); data.path a dataset made by
`controlsprint prepare --conditions canny` at 512 px. Cost (throughput model in docs/training.md):
about 3.0 TFLOP per sample (VAE encode, UNet forward + activation gradients, ControlNet forward +
backward); at 40% MFU a v4 chip does ~37 samples/s, remat costs ~25%, so the v4-8 runs ~110 samples/s:
20k steps of batch 64 (1.28M samples) take ~3.2 hours, ~13 chip-hours.
"""

from controlsprint.training.config import (
    DataSection,
    MeshSection,
    ModelSection,
    OptimSection,
    RunSection,
    TrainConfig,
)


def get_config() -> TrainConfig:
    return TrainConfig(
        name="sd15-tpu-v4-8",
        model=ModelSection(mode="controlnet", base="/data/stable-diffusion-v1-5", condition="canny"),
        data=DataSection(path="/data/canny-512", resolution=512, caption_dropout=0.5, prefetch=4),
        # ControlNet paper settings: AdamW at 1e-5, no decay; the zero convs make warmup unnecessary.
        optim=OptimSection(learning_rate=1e-5, grad_clip=1.0, ema_decay=0.0),
        mesh=MeshSection(data=-1, fsdp=1),  # 4 chips x data parallel; fsdp=4 halves memory if needed
        run=RunSection(
            output_dir="runs/sd15-canny",
            steps=20_000,
            batch_size=64,  # 16 per chip
            dtype="bfloat16",
            remat=True,  # fits 16 x 512 px per 32 GiB chip
            log_every=50,
            checkpoint_every=2_000,
            keep_checkpoints=3,
            validate_every=1_000,
            validation_samples=8,
            validation_steps=20,
        ),
    )
