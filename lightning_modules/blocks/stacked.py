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

:class:`GroupedStack` keeps the same state but evaluates the copies as *one* network whose every
layer is the grouped version of the copy's layer (:func:`grouped_network`): the same maths as
``H`` separate networks and as the ``vmap`` forward, without its per-call batching overhead,
with batch norm as one native call, and the first convolution of a shared input (an image)
dense over ``H x`` its output channels instead of grouped over ``H`` copies of the image.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
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


# -- the copies as one grouped network --------------------------------------------------------
class GroupedLinear(nn.Module):
    """``H`` independent ``Linear(in, out)`` layers on a (N, H * in) input -> (N, H * out); the
    weight is stored (H * out, in), i.e. the stacked (H, out, in) weights flattened."""

    def __init__(self, copies: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.copies, self.in_features, self.out_features = copies, in_features, out_features
        self.weight = nn.Parameter(torch.empty(copies * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(copies * out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        h, n = self.copies, x.shape[0]
        out = torch.bmm(x.view(n, h, self.in_features).transpose(0, 1),  # (H, N, in) x (H, in, out)
                        self.weight.view(h, self.out_features, self.in_features).transpose(1, 2))
        if self.bias is not None:
            out = out + self.bias.view(h, 1, self.out_features)
        return out.transpose(0, 1).reshape(n, h * self.out_features)


def grouped_network(template: nn.Module, copies: int, shared_input: str | None = None) -> nn.Module:
    """A (meta-device) copy of ``template`` whose every layer computes ``copies`` independent
    copies of it on channel-stacked tensors (N, copies * C, ...): ``Conv2d`` / ``ConvTranspose2d``
    with ``copies x`` the groups and channels, ``BatchNorm2d`` over ``copies * C`` channels (its
    statistics per channel, hence per copy), ``Linear`` as :class:`GroupedLinear`. Parameter-free
    layers (ReLU, pooling, interpolation, sums) act per channel already. The parameter names are
    the template's and each parameter is the stacked (copies, ...) one flattened over its first
    two dimensions. ``shared_input``: the name of the convolution that reads the network's input
    when one input (N, C, ...) is shared by all copies; it stays ungrouped with ``copies x`` its
    output channels (a dense convolution with the copies' filters concatenated)."""
    net = copy.deepcopy(template).to("meta")
    h = copies
    for name, module in list(net.named_modules()):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            shared = name == shared_input
            kind = nn.ConvTranspose2d if isinstance(module, nn.ConvTranspose2d) else nn.Conv2d
            kwargs = dict(stride=module.stride, padding=module.padding, dilation=module.dilation,
                          groups=module.groups * (1 if shared else h), bias=module.bias is not None,
                          padding_mode=module.padding_mode, device="meta")
            if kind is nn.ConvTranspose2d:
                kwargs["output_padding"] = module.output_padding
            new = kind(module.in_channels * (1 if shared else h), module.out_channels * h, module.kernel_size, **kwargs)
        elif isinstance(module, nn.BatchNorm2d) and type(module) is nn.BatchNorm2d:
            new = nn.BatchNorm2d(module.num_features * h, module.eps, module.momentum, module.affine,
                                 module.track_running_stats, device="meta")
            if module.momentum is None:
                raise ValueError("GroupedStack needs batch norm with a momentum (a cumulative average counts per copy)")
        elif isinstance(module, nn.Linear) and type(module) is nn.Linear:
            new = GroupedLinear(h, module.in_features, module.out_features, module.bias is not None).to("meta")
        elif next(module.parameters(recurse=False), None) is not None or next(module.buffers(recurse=False), None) is not None:
            raise ValueError(f"GroupedStack cannot group layer {name!r} of type {type(module).__name__}")
        else:
            continue
        parent, _, leaf = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf, new)
    if shared_input is not None and not isinstance(net.get_submodule(shared_input), (nn.Conv2d, nn.ConvTranspose2d)):
        raise ValueError(f"shared_input {shared_input!r} is not a convolution of the template")
    return net


class GroupedStack(StackedModules):
    """``H`` hypotheses' networks (:class:`DeconvNet` or :class:`MapRegressor`) with independent
    parameters, batch-norm statistics and gradients, computed as one grouped network
    (:func:`grouped_network`). State, :meth:`unstack` and the call convention are
    :class:`~lightning_modules.blocks.stacked.StackedModules`' (its ``vmap`` forward gives the
    same outputs: ``tests/test_deepskeleton.py``): ``forward(x, shared=True)`` for one input
    (B, ...) seen by every copy, ``shared=False`` for one input per copy (H, B, ...); the outputs
    gain a leading ``H`` dimension (views of the channel-stacked result, no copy).

    ``input_conv``: the name of the template's convolution that reads the input (made dense for
    a shared input). ``channels_last``: compute in the channels-last memory format (faster
    grouped convolutions on CPU oneDNN; the same values)."""

    def __init__(self, modules: Sequence[nn.Module], input_conv: str, channels_last: bool = False):
        super().__init__(modules)
        self.input_conv = input_conv
        self.channels_last = bool(channels_last)
        nets = {True: grouped_network(self._template, self.count, input_conv),
                False: grouped_network(self._template, self.count)}
        object.__setattr__(self, "_grouped", nets)  # not submodules: their weights are ours

    def train(self, mode: bool = True):
        super().train(mode)
        for net in self._grouped.values():
            net.train(mode)
        return self

    def forward(self, x, shared: bool = True):
        h = self.count
        if shared:
            batch, inputs = x.shape[0], x
        else:
            if x.shape[0] != h:
                raise ValueError(f"expected one input per hypothesis ({h}), got a leading dimension of {x.shape[0]}")
            batch = x.shape[1]
            inputs = x.transpose(0, 1).reshape(batch, h * x.shape[2], *x.shape[3:])
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        params, buffers = self.stacked_state()
        state = {name: value.flatten(0, 1) if value.dim() > 1 else value for name, value in {**params, **buffers}.items()}
        out = torch.func.functional_call(self._grouped[bool(shared)], state, (inputs,))
        return torch.utils._pytree.tree_map(lambda t: _ungroup(t, batch, h), out)


def _ungroup(t: Tensor, batch: int, copies: int) -> Tensor:
    """(B, H * C, ...) or (B * H, ...) of a grouped network -> (H, B, C, ...) / (H, B, ...)."""
    if t.shape[0] == batch * copies and copies > 1:
        return t.reshape(batch, copies, *t.shape[1:]).transpose(0, 1)
    return t.reshape(batch, copies, t.shape[1] // copies, *t.shape[2:]).transpose(0, 1)
