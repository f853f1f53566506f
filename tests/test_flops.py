"""genlib.models.flops: the same counts as torch's FlopCounterMode, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from genlib.models import get_model, list_models
from genlib.models.flops import FlopCounter
from genlib.spec import resolve_spec


@pytest.mark.parametrize("family", list_models())
def test_counts_what_torchs_flop_counter_counts(family):
    spec = resolve_spec("quick", family)
    model = get_model(family, spec.model)
    x, y = torch.rand(3, *spec.model.image_shape), torch.zeros(3, dtype=torch.long)
    theirs = FlopCounterMode(display=False)
    with torch.no_grad(), FlopCounter() as mine:
        torch.manual_seed(0)
        model.loss(x, y)
    with torch.no_grad(), theirs:
        torch.manual_seed(0)
        model.loss(x, y)
    assert mine.flops == theirs.get_total_flops() > 0


def test_backward_products_are_counted_too():
    w = torch.randn(5, 7, requires_grad=True)
    with FlopCounter() as c:
        (torch.randn(3, 5) @ w).sum().backward()
    assert c.flops == 2 * 3 * 5 * 7 * 2  # forward (3x5 @ 5x7) and the weight's gradient (5x3 @ 3x7)


def test_counting_imports_no_dynamo():
    code = ("import sys, torch\nfrom genlib.models.flops import FlopCounter\n"
            "with FlopCounter() as c:\n    torch.ones(2, 3) @ torch.ones(3, 4)\n"
            "assert c.flops == 48, c.flops\nassert 'torch._dynamo' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_products_written_into_a_given_tensor_count():
    out = torch.empty(3, 7)
    with FlopCounter() as c:
        torch.mm(torch.randn(3, 5), torch.randn(5, 7), out=out)
        torch.addmm(torch.zeros(7), torch.randn(3, 5), torch.randn(5, 7), out=out)
    assert c.flops == 2 * (2 * 3 * 5 * 7)
