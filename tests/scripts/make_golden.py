"""Write the golden files of the DRAEM and auto-encoder tests from PyTorch implementations.

Needs the ``torch`` extra (``pip install -e ".[torch]"``); the tests that read the files do not.
Run from the repository root: ``python tests/scripts/make_golden.py``. It writes

* ``tests/data/draem_golden.npz``: state dicts of official DRAEM (widths 6 / 4) and of
  anomalib's DRAEM with the SSPCAB bottleneck (widths 4 / 2), a fixed input, their eval-mode
  reconstructions, logits and image scores, and one training step of each (a fixed clean and
  synthetic batch; the loss terms and the gradients of a few named parameters);
* ``tests/data/autoencoder_golden.npz``: each auto-encoder variant's weights, input and output.

Weights, BatchNorm statistics and inputs are rounded to float16 values and stored as float16, so
the files stay small and every value is exact in float32 and float64. BatchNorm running
statistics are first set from a forward pass in training mode, so activations keep a sensible
scale through the deep networks, then randomised. The DRAEM references are computed in float64:
a random deep BatchNorm network amplifies float32 rounding (PyTorch's own float32 result is
5e-5 away from its float64 result here, and first-layer gradients 1e-2), so only float64 on both
sides can pin the implementation to 1e-5.
"""

from __future__ import annotations

import copy
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_torch as gt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
SSPCAB_LAMBDA = 0.1
# Parameters whose gradients the train-step golden keeps (reconstructive / discriminative).
GRAD_NAMES = (
    "r/encoder.block1.0.weight",
    "r/encoder.block4.4.weight",
    "r/decoder.db4.3.weight",
    "r/decoder.fin_out.0.bias",
    "d/encoder_segment.block1.0.weight",
    "d/decoder_segment.db_b.1.bias",
    "d/decoder_segment.fin_out.0.weight",
)
SSPCAB_GRAD_NAMES = (
    "r/encoder.block5.masked_conv2.weight",
    "r/encoder.block5.attention_module.fc1.weight",
)


def fp16(t: torch.Tensor) -> torch.Tensor:
    return t.half().float()


def randomise(module: torch.nn.Module, calibration: torch.Tensor, gen: torch.Generator) -> None:
    """BatchNorm statistics from one training-mode pass, then random scales, shifts and stats."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0  # running stats := this batch's
    module.train()
    with torch.no_grad():
        module(calibration)
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
                m.bias.copy_(0.2 * torch.randn(n, generator=gen))
                m.running_mean.add_(0.1 * torch.randn(n, generator=gen) * m.running_var.sqrt())
                m.running_var.mul_(torch.empty(n).uniform_(0.7, 1.4, generator=gen))
                m.momentum = 0.1
        for p in list(module.parameters()) + list(module.buffers()):
            if p.is_floating_point():
                p.copy_(fp16(p))
    module.eval()


def state(prefix: str, module: torch.nn.Module) -> dict[str, np.ndarray]:
    out = {}
    for k, v in module.state_dict().items():
        v = v.numpy()
        out[prefix + k] = v.astype(np.float16) if v.dtype == np.float32 else v
    return out


def draem_case(name, recon_width, disc_width, sspcab, image_first, image, clean, aug, mask, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rec_net = gt.Reconstructive(recon_width, sspcab=sspcab)
    disc_net = gt.Discriminative(disc_width)
    calib = torch.rand(4, 3, 64, 64, generator=gen)
    randomise(rec_net, calib, gen)
    with torch.no_grad():
        rec_calib = rec_net(calib)
    parts = [calib, rec_calib] if image_first else [rec_calib, calib]
    randomise(disc_net, torch.cat(parts, 1), gen)
    out = state(f"{name}/reconstructive/", rec_net) | state(f"{name}/discriminative/", disc_net)
    rec_net, disc_net = rec_net.double(), disc_net.double()
    image, clean, aug, mask = (t.double() for t in (image, clean, aug, mask))

    with torch.no_grad():
        rec, logits = gt.draem_forward(rec_net, disc_net, image, image_first)
    out[f"{name}/eval/reconstruction"] = rec.numpy()
    out[f"{name}/eval/logits"] = logits.numpy()
    out[f"{name}/eval/score"] = gt.image_score(logits).numpy()

    # One training step (BatchNorm on batch statistics) on copies: the stored weights stay put.
    rec_net, disc_net = copy.deepcopy(rec_net).train(), copy.deepcopy(disc_net).train()
    rec, logits = gt.draem_forward(rec_net, disc_net, aug, image_first)
    terms = {
        "l2": F.mse_loss(rec, clean),
        "ssim": gt.ssim_loss(rec, clean),
        "focal": gt.focal_loss(torch.softmax(logits, dim=1), mask),
    }
    block = rec_net.encoder.block5
    if sspcab:  # anomalib: MSE between the bottleneck block's input and output, weight lambda
        terms["sspcab"] = F.mse_loss(
            rec_net.encoder.block5_input, block(rec_net.encoder.block5_input)
        )
    else:
        terms["sspcab"] = torch.zeros(())
    terms["total"] = terms["l2"] + terms["ssim"] + terms["focal"] + SSPCAB_LAMBDA * terms["sspcab"]
    terms["total"].backward()
    for key, value in terms.items():
        out[f"{name}/train/loss/{key}"] = np.float64(value.item())
    nets = {"r": dict(rec_net.named_parameters()), "d": dict(disc_net.named_parameters())}
    for grad_name in GRAD_NAMES + (SSPCAB_GRAD_NAMES if sspcab else ()):
        net, param = grad_name.split("/")
        out[f"{name}/train/grad/{grad_name}"] = nets[net][param].grad.numpy()
    return out


def synthetic_batch(gen: torch.Generator):
    """Sample 0 carries a blob-shaped anomaly blended at opacity 0.7; sample 1 is clean."""
    clean = fp16(torch.rand(2, 3, 64, 64, generator=gen))
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = ((yy - 20) ** 2 / 120 + (xx - 40) ** 2 / 60) < 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, 0] = blob.float()
    texture = torch.rand(2, 3, 64, 64, generator=gen)
    aug = fp16(clean * (1 - mask) + 0.7 * texture * mask + 0.3 * clean * mask)
    return clean, aug, mask


def autoencoder_cases(gen: torch.Generator) -> dict[str, np.ndarray]:
    variants = {
        "none": {},
        "early": {0: ("sspcab_early", 1)},
        "middle": {1: ("sspcab_middle", 1)},
        "late": {2: ("sspcab_late", 1)},
        "early+middle": {0: ("sspcab_early", 1), 1: ("sspcab_middle", 1)},
        "early+late": {0: ("sspcab_early", 1), 2: ("sspcab_late", 1)},
        "middle+late": {1: ("sspcab_middle", 1), 2: ("sspcab_late", 1)},
        "early+middle+late": {
            i: (f"sspcab_{p}", 1) for i, p in enumerate(("early", "middle", "late"))
        },
        "late_m3": {2: ("sspcab_late", 2)},  # 3x3 masked centre: dilation 1 + 1
    }
    image = fp16(torch.rand(2, 1, 32, 32, generator=gen))
    out = {"autoencoder/input": image.numpy().astype(np.float16)}
    for i, (variant, blocks) in enumerate(variants.items()):
        torch.manual_seed(100 + i)
        model = gt.Autoencoder(blocks=blocks)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(fp16(p * 2.0))  # a larger scale keeps the signal alive through 7 layers
            out |= state(f"autoencoder/{variant}/weights/", model)
            out[f"autoencoder/{variant}/output"] = model(image).numpy()
    return out


def main() -> None:
    os.makedirs(DATA, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    image = fp16(torch.rand(1, 3, 64, 64, generator=gen))
    clean, aug, mask = synthetic_batch(gen)
    draem = {
        "input": image.numpy().astype(np.float16),
        "train/clean": clean.numpy().astype(np.float16),
        "train/augmented": aug.numpy().astype(np.float16),
        "train/mask": mask.numpy().astype(np.uint8),
        "sspcab_lambda": np.float32(SSPCAB_LAMBDA),
    }
    batch = (image, clean, aug, mask)
    draem |= draem_case("official", 6, 4, False, False, *batch, seed=1)
    draem |= draem_case("anomalib", 4, 2, True, True, *batch, seed=2)
    np.savez_compressed(os.path.join(DATA, "draem_golden.npz"), **draem)
    np.savez_compressed(os.path.join(DATA, "autoencoder_golden.npz"), **autoencoder_cases(gen))
    for name in ("draem_golden.npz", "autoencoder_golden.npz"):
        print(name, os.path.getsize(os.path.join(DATA, name)), "bytes")


if __name__ == "__main__":
    main()
