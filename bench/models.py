"""SD1.5-size ControlNet + UNet forward pass: controlsprint (Flax) vs diffusers 0.39 (PyTorch), same run.

    python bench/models.py [--size 512] [--batch 1] [--repeats 3] [--settle] [--tiny]

Both sides get identical random weights (the torch models' state dicts converted by our loader's
converter) and identical inputs; the outputs are compared first (max abs difference printed). Then
ours (one jitted program: ControlNet then UNet) and torch (inference_mode) run alternately; medians
and the ratio ours/torch are printed. Goal (issue 5): ratio <= 0.92. The last line is one JSON object.
With --settle each timed call follows an untimed call of the same side, not the other side's run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import alternate, cpu_peak_gflops, emit

from controlsprint.models.configs import (
    SD15_CONTROLNET,
    SD15_UNET,
    TINY_CONTROLNET,
    TINY_UNET,
    config_to_json,
)


def torch_models(unet_cfg, cn_cfg):
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    def kwargs(cfg):
        return {k: v for k, v in config_to_json(cfg, "x").items() if not k.startswith("_")}

    torch.manual_seed(0)
    with torch.device("cpu"):
        unet = UNet2DConditionModel(**kwargs(unet_cfg)).eval()
        cn = ControlNetModel(**kwargs(cn_cfg)).eval()
        with torch.no_grad():  # non-zero zero-convs, so the residuals carry real work
            for name, p in cn.named_parameters():
                if "controlnet_" in name or "conv_out" in name:
                    p.normal_(0, 0.01)
    return unet, cn


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512, help="image size in pixels (latents are size/8)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny configs (a smoke run, seconds)")
    parser.add_argument(
        "--settle",
        action="store_true",
        help="an untimed call of the same side before each timed one: each side timed in its own steady "
        "state, not right after the other (see bench/common.py alternate)",
    )
    args = parser.parse_args()

    import jax
    import torch

    from controlsprint.models.components import abstract_params, build_module
    from controlsprint.models.convert import torch_to_flax
    from controlsprint.runtime import enable_compilation_cache

    enable_compilation_cache()
    peak = cpu_peak_gflops()  # measured now, on an idle process, for the MFU figures
    torch.set_num_threads(torch.get_num_threads())
    unet_cfg, cn_cfg = (TINY_UNET, TINY_CONTROLNET) if args.tiny else (SD15_UNET, SD15_CONTROLNET)
    t_unet, t_cn = torch_models(unet_cfg, cn_cfg)
    to_np = lambda m: {k: v.detach().numpy() for k, v in m.state_dict().items()}  # noqa: E731
    unet_params = jax.device_put(torch_to_flax(to_np(t_unet), abstract_params(unet_cfg), source="unet"))
    cn_params = jax.device_put(torch_to_flax(to_np(t_cn), abstract_params(cn_cfg), source="controlnet"))
    unet, cn = build_module(unet_cfg), build_module(cn_cfg)

    rng = np.random.default_rng(0)
    side = args.size // 8
    latents = rng.standard_normal((args.batch, side, side, 4)).astype(np.float32)
    text = rng.standard_normal((args.batch, 77, unet_cfg.cross_attention_dim)).astype(np.float32)
    cond = rng.random((args.batch, args.size, args.size, 3)).astype(np.float32)
    t = np.full((args.batch,), 500.0, np.float32)

    @jax.jit
    def ours(unet_params, cn_params, latents, t, text, cond):
        down, mid = cn.apply({"params": cn_params}, latents, t, text, cond, 1.0)
        return unet.apply({"params": unet_params}, latents, t, text, down, mid)

    start = time.perf_counter()
    compiled = ours.lower(unet_params, cn_params, latents, t, text, cond).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    gflop = float(cost.get("flops", 0.0)) / 1e9

    tl, tt, tx, tc = (
        torch.from_numpy(np.ascontiguousarray(a))
        for a in (latents.transpose(0, 3, 1, 2), t, text, cond.transpose(0, 3, 1, 2))
    )

    def theirs():
        with torch.inference_mode():
            down, mid = t_cn(tl, tt, tx, tc, 1.0, return_dict=False)
            return t_unet(
                tl, tt, tx, down_block_additional_residuals=down, mid_block_additional_residual=mid
            ).sample

    def run_ours():
        return compiled(unet_params, cn_params, latents, t, text, cond).block_until_ready()

    diff = float(np.abs(np.asarray(run_ours()) - theirs().numpy().transpose(0, 2, 3, 1)).max())
    print(
        f"compile {compile_s:.1f} s, {gflop:.1f} GFLOP per forward, max |ours - torch| = {diff:.2e}",
        flush=True,
    )
    medians = alternate({"ours": run_ours, "torch": theirs}, args.repeats, settle=args.settle)
    ratio = medians["ours"] / medians["torch"]
    mfu = gflop / medians["ours"] / peak
    print(
        f"ours {medians['ours']:.3f} s  torch {medians['torch']:.3f} s  ratio {ratio:.3f} (goal <= 0.92)  MFU {mfu:.1%} of {peak:.0f} GFLOP/s"
    )
    emit(
        {
            "bench": "models",
            "config": "tiny" if args.tiny else "sd15",
            "size": args.size,
            "batch": args.batch,
            "settle": args.settle,
            "ours_s": round(medians["ours"], 4),
            "torch_s": round(medians["torch"], 4),
            "ratio": round(ratio, 4),
            "goal_ratio": 0.92,
            "compile_s": round(compile_s, 2),
            "gflop": round(gflop, 1),
            "mfu": round(mfu, 4),
            "peak_gflops": round(peak, 1),
            "max_abs_diff": diff,
        }
    )


if __name__ == "__main__":
    main()
