"""Training throughput of genlib against the loop a user would write, and genlib's RBM against scikit-learn's.

Run ``python -m bench.throughput [--quick] [--device auto|cpu|cuda] [--json PATH] [--markdown PATH]``.

Section 1 measures training samples per second for each family on one device, side by side:

* ``naive b128``: a torchvision-style ``Dataset`` that turns each uint8 image into a PIL image and
  then a tensor with ``ToTensor()`` (as ``torchvision.datasets.MNIST`` does), a
  ``DataLoader(batch_size=128, shuffle=True)``, the same model and optimizer, and the model's own
  ``training_step`` (so the two sides differ only in the data path and the loop around the step).
  Like pytorch/examples' MNIST loop it reads ``loss.item()`` every 10 batches.
* ``genlib b128``: ``genlib.training.loop.train_one_epoch`` on the whole data set held as one
  tensor on the device, same batch size: the honest measure of the data-path overhead.
* ``genlib bB``: the same with a bigger batch; ``+tuned``: fused optimizers (and on CUDA
  ``cudnn.benchmark`` and channels_last); ``+compile``: ``torch.compile`` on top of that
  (``mode="reduce-overhead"``, i.e. CUDA graphs, on CUDA).

The variants of a family take turns within each repeat (the order rotates between repeats) so
that load from other processes hits every side alike; tables report medians over the repeats and
ratios of the medians. Section 2 times genlib's ``rbm`` against scikit-learn's ``BernoulliRBM`` at
matched settings and compares their pseudo-likelihoods on the test set.

Modules: ``data`` (images and the naive side's Dataset), ``variants`` (the sides and their set-up),
``runner`` (one side trained), ``measure`` (interleaved repeats of one family), ``sklearn_rbm``
(the scikit-learn comparison), ``render`` (markdown), ``cli`` (options and outputs).
This package imports neither prefect nor mlflow.
"""

from bench.throughput.cli import THROUGHPUT_BEGIN, THROUGHPUT_END, main, parse_args
from bench.throughput.data import BenchData, load_bench_data, synthetic_data
from bench.throughput.measure import measure_family
from bench.throughput.render import render_markdown
from bench.throughput.sklearn_rbm import compare_rbm_with_sklearn, rbm_from_sklearn

__all__ = [
    "THROUGHPUT_BEGIN",
    "THROUGHPUT_END",
    "BenchData",
    "compare_rbm_with_sklearn",
    "load_bench_data",
    "main",
    "measure_family",
    "parse_args",
    "rbm_from_sklearn",
    "render_markdown",
    "synthetic_data",
]
