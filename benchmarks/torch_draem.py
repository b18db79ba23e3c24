"""DRAEM(+SSPCAB) and its train step in PyTorch, written from the layer tables, for timing only.

Follows the official DRAEM code: CBR blocks (conv 3x3 + BatchNorm + ReLU), the reconstructive
encoder-decoder without skips and the six-level U-Net discriminator (``model_unet.py``), the
wiring ``D(concat(rec, augmented))`` and Adam (``train_DRAEM.py``), the losses L2 + SSIM + focal
on probabilities (``loss.py``) plus ``0.1 *`` the SSPCAB loss. With ``sspcab=True`` the second conv
of ``db4`` in both networks is an SSPCAB block (four corner 1x1 convs on crops of the padded
input, ReLU after the sum, squeeze-and-excitation, as ``sspcab_torch.py``), BatchNorm + ReLU kept,
as
``sspcab_jax.models.Draem(sspcab_placement='penultimate')``. Initialisation is PyTorch's default
(timing does not depend on it). Needs the ``torch`` extra.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SSPCAB(nn.Module):
    """Masked convolution (k = 1, d = 1: four corner 1x1 convs) + ReLU + squeeze-excitation."""

    def __init__(self, channels: int, kernel: int = 1, dilation: int = 1, ratio: int = 8):
        super().__init__()
        self.pad = kernel + dilation
        self.border = kernel + 2 * dilation + 1
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, kernel) for _ in range(4))
        self.fc1 = nn.Linear(channels, channels // ratio)
        self.fc2 = nn.Linear(channels // ratio, channels)
        self.loss = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, c = self.pad, self.border
        xp = F.pad(x, (p, p, p, p))
        h, w = xp.shape[-2:]
        crops = (
            xp[..., : h - c, : w - c],
            xp[..., c:, : w - c],
            xp[..., : h - c, c:],
            xp[..., c:, c:],
        )
        y = F.relu(sum(conv(crop) for conv, crop in zip(self.convs, crops, strict=True)))
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(y.mean(dim=(2, 3))))))
        y = y * gate[:, :, None, None]
        self.loss = F.mse_loss(y, x)
        return y


def cbr(cin: int, cout: int, sspcab: bool = False) -> nn.Sequential:
    """Conv 3x3 (or SSPCAB) -> BatchNorm -> ReLU."""
    layer = SSPCAB(cin) if sspcab else nn.Conv2d(cin, cout, 3, padding=1)
    return nn.Sequential(layer, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Reconstructive(nn.Module):
    """Encoder-decoder without skips (``ReconstructiveSubNetwork``)."""

    def __init__(self, b: int, sspcab: bool):
        super().__init__()
        widths, cin, enc = (b, 2 * b, 4 * b, 8 * b, 8 * b), 3, []
        for w in widths:
            enc.append(nn.Sequential(cbr(cin, w), cbr(w, w)))
            cin = w
        self.enc = nn.ModuleList(enc)
        stages = ((8 * b, 8 * b, 4 * b), (4 * b, 4 * b, 2 * b), (2 * b, 2 * b, b), (b, b, b))
        self.dec = nn.ModuleList(
            nn.ModuleList([cbr(cin, w_up), cbr(w_up, w0), cbr(w0, w1, sspcab and i == 3)])
            for i, (cin, (w_up, w0, w1)) in enumerate(
                zip((8 * b, 4 * b, 2 * b, b), stages, strict=True)
            )
        )
        self.fin = nn.Conv2d(b, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.enc):
            x = block(x)
            if i < 4:
                x = F.max_pool2d(x, 2)
        for upc, c0, c1 in self.dec:
            x = c1(c0(upc(up(x))))
        return self.fin(x)


class Discriminative(nn.Module):
    """Six-level U-Net (``DiscriminativeSubNetwork``), decoder concat ``[upsampled, skip]``."""

    def __init__(self, b: int, sspcab: bool):
        super().__init__()
        widths, cin, enc = (b, 2 * b, 4 * b, 8 * b, 8 * b, 8 * b), 6, []
        for w in widths:
            enc.append(nn.Sequential(cbr(cin, w), cbr(w, w)))
            cin = w
        self.enc = nn.ModuleList(enc)
        dec = []
        for i, (w, skip) in enumerate(
            zip((8 * b, 4 * b, 2 * b, b, b), widths[-2::-1], strict=True)
        ):
            dec.append(nn.ModuleList([cbr(cin, w), cbr(w + skip, w), cbr(w, w, sspcab and i == 4)]))
            cin = w
        self.dec = nn.ModuleList(dec)
        self.fin = nn.Conv2d(b, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for upc, c0, c1 in self.dec:
            x = c1(c0(torch.cat([upc(up(x)), skips.pop()], dim=1)))
        return self.fin(x)


class TorchDraem(nn.Module):
    """Reconstructive net, then the discriminator on ``concat(rec, image)`` (``train_DRAEM.py``)."""

    def __init__(self, recon_width: int = 128, disc_width: int = 64, sspcab: bool = True):
        super().__init__()
        self.rec = Reconstructive(recon_width, sspcab)
        self.disc = Discriminative(disc_width, sspcab)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rec = self.rec(x)
        return rec, self.disc(torch.cat([rec, x], dim=1))

    def sspcab_loss(self) -> torch.Tensor:
        losses = [m.loss for m in self.modules() if isinstance(m, SSPCAB) and m.loss is not None]
        return sum(losses) if losses else torch.zeros(())


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - mean(SSIM)`` (DRAEM's ``loss.py``): 11x11 Gaussian, zero pad 5, range from ``a``."""
    c = a.shape[1]
    window = _gaussian_window().to(a)[None, None].expand(c, 1, 11, 11)

    def blur(x):
        return F.conv2d(x, window, padding=5, groups=c)

    big = 255.0 if a.max() > 128 else 1.0
    small = -1.0 if a.min() < -0.5 else 0.0
    rng = big - small
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return 1.0 - ssim.mean()


def focal_loss(probs: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss on probabilities, smoothed one-hot target (DRAEM's ``loss.py``)."""
    smooth = 1e-5
    onehot = torch.cat([1 - mask, mask], dim=1).clamp(smooth, 1 - smooth)
    pt = (onehot * probs).sum(dim=1) + smooth
    return (-((1 - pt) ** gamma) * pt.log()).mean()


def make_train_step(model: TorchDraem, lr: float = 1e-4):
    """``step(augmented, clean, mask) -> loss``: forward, losses, backward, Adam update."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()

    def step(augmented: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        rec, logits = model(augmented)
        loss = (
            F.mse_loss(rec, clean)
            + ssim_loss(rec, clean)
            + focal_loss(torch.softmax(logits, dim=1), mask)
            + 0.1 * model.sspcab_loss()
        )
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def make_inference(model: TorchDraem):
    """``infer(images) -> anomaly map``: eval mode, no grad, softmax probability of class 1."""

    @torch.no_grad()
    def infer(images: torch.Tensor) -> torch.Tensor:
        model.eval()
        _, logits = model(images)
        return torch.softmax(logits, dim=1)[:, 1]

    return infer
