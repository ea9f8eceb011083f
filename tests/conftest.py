"""Make the top-level scripts importable from tests/ and keep CPU tests on one thread."""
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Tiny models on a 2-core CI machine: one thread is faster and immune to a busy neighbour core.
torch.set_num_threads(1)
