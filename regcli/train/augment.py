"""Batched random rotation on the training device, as one gather from a precomputed table.

The classic pipeline rotates each image through PIL in a DataLoader; on a small CPU that costs
several times more than the model itself. `affine_grid` + `grid_sample` on whole batches still
costs about as much as the model. Here every discrete angle (0.1 degree apart) has a table giving,
for each output pixel, its four source neighbours and their bilinear weights, so rotating a batch
is one gather and one weighted sum. Pixels that fall outside the image read a zero (black) pixel,
like torchvision's fill=0. A 0.1-degree grid is statistically indistinguishable from a continuous
uniform angle at MNIST's resolution (it moves a corner pixel by at most 0.02 pixel).
"""

import math

import torch

from regcli.core.config import SIDE, UNIT

PIXELS = SIDE * SIDE
ANGLE_STEP = 0.1  # degrees between two neighbouring angles of the table


class RandomRotation:
    """Rotates uint8 image batches by a uniformly drawn angle in +-max_degrees."""

    def __init__(self, max_degrees: float, device: torch.device | str = "cpu"):
        steps = round(max_degrees / ANGLE_STEP)
        # exact 0 and exact +-max_degrees, whatever the rounding
        angles = torch.arange(-steps, steps + 1, dtype=torch.float64) / max(steps, 1) * max_degrees
        self.angles = angles
        self.index, self.weight = _sampling_table(angles)
        self.index, self.weight = self.index.to(device), self.weight.to(device)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """uint8 [B, 28, 28] -> float32 [B, 1, 28, 28] in [0, 1], each image rotated."""
        batch = images.shape[0]
        choice = torch.randint(
            len(self.angles), (batch,), generator=generator, device=images.device
        )
        return self.rotate(images, choice)

    def rotate(self, images: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """Rotate image i by self.angles[choice[i]]."""
        batch = images.shape[0]
        flat = images.reshape(batch, PIXELS).float()
        padded = torch.nn.functional.pad(flat, (0, 1))  # index PIXELS reads a black pixel
        neighbours = padded.gather(1, self.index.index_select(0, choice)).view(batch, PIXELS, 4)
        rotated = (neighbours * self.weight.index_select(0, choice)).sum(-1)
        return rotated.view(batch, 1, SIDE, SIDE)


def _sampling_table(angles_degrees: torch.Tensor):
    """For each angle and output pixel: 4 source indices [A, PIXELS*4] and weights [A, PIXELS, 4].

    Weights include the 1/255 scale, so the weighted sum lands directly in [0, 1].
    """
    centre = (SIDE - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(SIDE, dtype=torch.float64),
        torch.arange(SIDE, dtype=torch.float64),
        indexing="ij",
    )
    dx, dy = (xs - centre).flatten(), (ys - centre).flatten()
    theta = angles_degrees[:, None] * (math.pi / 180)
    # inverse mapping: where in the source image each output pixel comes from
    # (counter-clockwise for positive angles, as torchvision's rotate)
    source_x = torch.cos(theta) * dx - torch.sin(theta) * dy + centre
    source_y = torch.sin(theta) * dx + torch.cos(theta) * dy + centre
    x0, y0 = source_x.floor(), source_y.floor()
    fx, fy = source_x - x0, source_y - y0
    indices, weights = [], []
    for ox, oy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        x, y = x0 + ox, y0 + oy
        inside = (x >= 0) & (x < SIDE) & (y >= 0) & (y < SIDE)
        indices.append(torch.where(inside, y * SIDE + x, PIXELS).long())
        weights.append(torch.where(inside, w, 0.0))
    index = torch.stack(indices, -1).reshape(len(angles_degrees), PIXELS * 4)
    weight = (torch.stack(weights, -1) * UNIT).float()
    return index, weight
