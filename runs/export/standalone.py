"""The exported ``model.py``: the readable module of :mod:`evograph.compile.codegen` with an
export's own ending — the run's input preprocessing (``PREPROCESS`` and ``preprocess(raw)``) and a
``load()`` that finds its weights beside the file (``__file__``), not in the current directory, so
two exports can be imported in one process from anywhere.

The preprocessing is written in torch only, with the very operations of
:meth:`evograph.data.preprocess.Preprocess.apply` (a float32 cast, a reshape, true divisions by
tensors), so the exported function gives the run's loader tensors bit for bit.
"""

from __future__ import annotations

import importlib.util
import pprint
import secrets
from pathlib import Path
from types import ModuleType

from ...compile.codegen import GeneratedModel, generate
from ...data.preprocess import Preprocess
from ...errors import ExportError
from ...genome.core import Genome

LOAD_MARK = "\n\ndef load("           # where codegen's generic ending starts
USAGE = ('    from model import load\n'
         '    net = load("model.safetensors")        # eval mode; call net.train() to keep '
         'training\n'
         '    logits = net(torch.randn(4, *INPUT_SHAPE))\n')
OUR_USAGE = ("    from model import load, preprocess\n"
             "    net = load()                   # weights beside this file; eval mode\n"
             "    logits = net(preprocess(raw))  # raw samples as PREPROCESS describes them\n")

ENDING = '''


# How the run's raw samples became this network's inputs (evograph's dataset loader):
#   {formula}
PREPROCESS = {record}


def preprocess(raw) -> torch.Tensor:
    """Raw samples -> inputs (N, *INPUT_SHAPE) float32, as the run's data loader made them.

    Raw: {raw}.
    A single sample becomes a batch of one."""
    if PREPROCESS is None:
        raise ValueError("the run's dataset did not record its preprocessing: feed inputs "
                         "the way its loader made them")
    x = raw.detach() if isinstance(raw, torch.Tensor) else torch.tensor(raw)
    x = x.to(torch.float32).reshape(-1, *PREPROCESS["shape"])
    ones = (1,) * x.dim()
    x = x / torch.full(ones, PREPROCESS["divide_by"], dtype=torch.float32)
    if PREPROCESS["standardise"] != "none":
        view = list(ones)
        if PREPROCESS["standardise"] == "channel":
            view[1] = len(PREPROCESS["mean"])
        mean = torch.tensor(PREPROCESS["mean"], dtype=torch.float32).reshape(view)
        std = torch.tensor(PREPROCESS["std"], dtype=torch.float32).reshape(view)
        x = (x - mean) / std
    return x


def load(weights=None, device: str = "cpu") -> {cls}:
    """Build the network and load its weights (safetensors: no pickle), in eval mode.

    ``weights`` defaults to the ``.safetensors`` file of this module's name beside this file
    (``model.safetensors``), wherever the current directory is."""
    from pathlib import Path

    from safetensors.torch import load_file

    if weights is None:
        weights = Path(__file__).resolve().with_suffix(".safetensors")
    net = {cls}()
    net.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    return net.to(device).eval()


if __name__ == "__main__":
    net = load()
    print(net(torch.zeros(2, *INPUT_SHAPE)).shape)
'''


def python_source(genome: Genome, class_name: str, note: str,
                  preprocess: Preprocess | None) -> GeneratedModel:
    """codegen's module for ``genome`` with the export's ending (see the module docstring)."""
    gen = generate(genome, class_name, note=note)
    head, mark, _ = gen.source.partition(LOAD_MARK)
    if not mark:
        raise ExportError("the generated model.py has no load() to replace (codegen changed); "
                          "export refused")
    record = None if preprocess is None else preprocess.to_dict()
    ending = ENDING.format(
        formula=(record or {}).get("formula", "unknown"), cls=class_name,
        record=pprint.pformat(record, sort_dicts=False, width=96),
        raw=(record or {}).get("raw", "unknown"))
    return GeneratedModel(head.replace(USAGE, OUR_USAGE) + ending,
                          gen.class_name, gen.prefixes)


def import_file(path: Path) -> ModuleType:
    """Import the Python file ``path`` under a fresh module name, as a user would by path
    (``importlib``), without touching ``sys.modules``."""
    name = f"evograph_export_{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExportError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
