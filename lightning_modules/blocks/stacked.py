"""Many independent copies of one network, computed in one batched call.

DeepSkeleton (Sec. 3.2-3.3) trains one (deconvolution, regression) pair per configuration
``(c_i, l_i)`` as independent networks. :class:`StackedModules` keeps ``H`` such networks
independent in their parameters (each has its own weights, batch-norm statistics and
gradients) but evaluates them with :func:`torch.func.vmap` over
:func:`torch.func.functional_call` of one template module, so convolutions become one
grouped convolution over all copies and one optimiser step updates every copy.

* parameters and buffers are stacked along a new leading dimension of size ``H``
  (:func:`torch.func.stack_module_state`), registered under the template's names with
  ``.`` replaced by ``__``;
* ``forward(x, shared=True)``: ``x`` (B, ...) is the same input for every copy (an image);
  ``shared=False``: ``x`` is (H, B, ...), one input per copy (each copy's skeleton maps);
  outputs gain a leading ``H`` dimension (pytrees of tensors work too);
* :meth:`unstack` returns copy ``i`` as an ordinary module with its own parameters (tests,
  the benchmark of separate modules).

Batch norm in training mode updates each copy's running statistics in place in the stacked
buffers, exactly as ``H`` separate modules would.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

SEP = "__"


def _flat(name: str) -> str:
    return name.replace(".", SEP)


class StackedModules(nn.Module):
    """``H`` modules of one architecture as one module (see the module docstring)."""

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__()
        modules = list(modules)
        if not modules:
            raise ValueError("StackedModules needs at least one module")
        params, buffers = stack_module_state(modules)
        self.count = len(modules)
        self._names = list(params)
        self._buffer_names = list(buffers)
        for name, value in params.items():
            self.register_parameter(_flat(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_flat(name), value.detach().clone())
        template = copy.deepcopy(modules[0]).to("meta")
        object.__setattr__(self, "_template", template)  # not a submodule: its weights are ours

    def train(self, mode: bool = True):
        super().train(mode)
        self._template.train(mode)
        return self

    def stacked_state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        params = {name: getattr(self, _flat(name)) for name in self._names}
        buffers = {name: getattr(self, _flat(name)) for name in self._buffer_names}
        return params, buffers

    def forward(self, x, shared: bool = True):
        params, buffers = self.stacked_state()

        def one(p, b, inp):
            return functional_call(self._template, (p, b), (inp,))

        return vmap(one, in_dims=(0, 0, None if shared else 0), randomness="different")(params, buffers, x)

    def unstack(self, index: int) -> nn.Module:
        """Copy ``index`` as an ordinary module (a copy of its parameters and buffers)."""
        module = copy.deepcopy(self._template).to_empty(device=getattr(self, _flat(self._names[0])).device)
        params, buffers = self.stacked_state()
        state = {name: value[index].detach().clone() for name, value in {**params, **buffers}.items()}
        module.load_state_dict(state)
        module.train(self.training)
        return module
