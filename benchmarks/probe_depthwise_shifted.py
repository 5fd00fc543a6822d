"""Probe (not a benchmark): a depthwise convolution written as k×k shifted multiplies, against Paddle's own depthwise
kernel, forward + backward, one thread, on shapes EfficientNet-Lite0 trains at 32-64 px (batch 32).

Run: ``python benchmarks/probe_depthwise_shifted.py``. Measured 2026-12-02 on the 2-core CI machine: the shifted
form is 1.06-21x slower than Paddle's kernel (the slices and their backward dominate), so autoft does not use it;
docs/performance.md cites it.
"""
from __future__ import annotations

import os
import time

os.environ["OMP_NUM_THREADS"] = "1"  # before paddle loads

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

SHAPES = ((32, 96, 16, 3, 2), (32, 144, 8, 3, 1), (32, 240, 4, 5, 1), (32, 32, 16, 3, 1), (32, 480, 2, 3, 1),
          (32, 144, 8, 5, 2))  # (batch, channels, height = width, kernel, stride)


def shifted(x: paddle.Tensor, w: paddle.Tensor, stride: int, pad: int) -> paddle.Tensor:
    """Depthwise conv of x [N, C, H, W] with w [C, 1, k, k] as a sum of k*k shifted, per-channel scaled slices."""
    k = w.shape[-1]
    xp = F.pad(x, [pad, pad, pad, pad])
    _, c, h, width = x.shape
    ho, wo = (h + 2 * pad - k) // stride + 1, (width + 2 * pad - k) // stride + 1
    taps = w.reshape([1, c, k * k])
    out = None
    for i in range(k):
        for j in range(k):
            window = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            term = window * taps[:, :, i * k + j].reshape([1, c, 1, 1])
            out = term if out is None else out + term
    return out


def milliseconds(fn, x: paddle.Tensor, w: paddle.Tensor, repeats: int = 10) -> float:
    times = []
    for _ in range(repeats + 2):  # the first two build kernels
        xx, ww = x.detach(), w.detach()
        xx.stop_gradient = ww.stop_gradient = False
        started = time.perf_counter()
        fn(xx, ww).sum().backward()
        times.append(time.perf_counter() - started)
    return float(np.median(times[2:])) * 1000


def main() -> None:
    paddle.set_device("cpu")
    for n, c, h, k, s in SHAPES:
        x, w = paddle.randn([n, c, h, h]), paddle.randn([c, 1, k, k])

        def kernel(xx: paddle.Tensor, ww: paddle.Tensor) -> paddle.Tensor:
            return F.conv2d(xx, ww, stride=s, padding=k // 2, groups=c)

        def slices(xx: paddle.Tensor, ww: paddle.Tensor) -> paddle.Tensor:
            return shifted(xx, ww, s, k // 2)

        error = float(np.abs(kernel(x, w).numpy() - slices(x, w).numpy()).max())
        print(f"{(n, c, h, k, s)}: paddle {milliseconds(kernel, x, w):.1f} ms, shifted "
              f"{milliseconds(slices, x, w):.1f} ms (max difference {error:.1e})", flush=True)


if __name__ == "__main__":
    main()
