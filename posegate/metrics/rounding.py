"""How far two float computations of one value may drift apart when only the order of their sums differs.

Another kernel, a batch split, a fused graph, another thread count or CPU instruction set adds the same terms in
another order. Two float sums of the same L terms then differ by about eps x sqrt(L) x the terms' scale: each
addition rounds by up to eps/2 of its running sum, and a long sum's roundings add up like a random walk (Higham
and Mary, "A new approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 41(5), 2019; the
worst case, L x eps, is far from what real kernels show). Through D layers in sequence the drifts add up the same
way: sqrt(D x L). The result's own largest magnitude stands for the terms' scale, and a factor of 4 covers the
error each layer's inputs carry in.
"""
from __future__ import annotations

import math

import numpy as np
import torch

SUM_ORDER_FACTOR = 4


def reordered_sum_tolerance(scale: float, length: int, dtype=np.float32, layers: int = 1,
                            factor: float = SUM_ORDER_FACTOR) -> float:
    """Absolute tolerance between two computations of values of magnitude up to ``scale``, each a chain of
    ``layers`` sums of ``length`` ``dtype`` terms, in two summation orders."""
    eps = torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else float(np.finfo(dtype).eps)
    return factor * eps * math.sqrt(length * layers) * float(scale)
