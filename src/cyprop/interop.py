"""Moving networks to and from other libraries: ONNX, PyTorch and scikit-learn.

- ``to_onnx(net, path)`` writes an ONNX model (needs ``pip install "cyprop[onnx]"``):
  input ``"X"`` of shape ``["batch", n_in]`` in the network's dtype (float32 or
  float64), one ``Gemm`` per layer (``X @ W.T + b``) followed by its activation
  (``Sigmoid``, ``Tanh``, ``Relu``, ``LeakyRelu`` with alpha 0.01, ``Softmax`` over the
  last axis, ``Identity``), output ``"Y"`` of shape ``["batch", n_out]``.  Opset 17 by
  default (13 and up accepted).  In float64 a leaky ReLU is written ``Max(z, 0.01 z)``
  instead: ONNX stores ``LeakyRelu``'s alpha as a float32, which is not 0.01 in float64.
- ``to_torch(net)`` gives an ``nn.Sequential`` of ``nn.Linear`` and activation modules
  (plus ``nn.Dropout`` after a hidden layer that has a dropout rate) in the network's
  dtype; ``from_torch(module)`` reads one back.
- ``from_sklearn(mlp)`` copies a fitted ``MLPClassifier`` / ``MLPRegressor`` (or cyprop's
  ``BackpropClassifier`` / ``BackpropRegressor``) into a ``Network``.

The name tables below are the one place where cyprop's activation and loss names meet
the other libraries'.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _archive
from ._maths import LEAKY_SLOPE

if TYPE_CHECKING:
    from collections.abc import Sequence

    import onnx
    import torch

    from .network import Network

#: cyprop's activation -> ONNX operator.
ONNX_OPS = {"identity": "Identity", "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu",
            "leaky_relu": "LeakyRelu", "softmax": "Softmax"}
#: The opset written unless another is asked for, and the lowest accepted (Softmax
#: works on the last axis alone from 13 on).
DEFAULT_OPSET = 17
MIN_OPSET = 13

#: cyprop's activation -> the ``torch.nn`` module class that computes it.
TORCH_MODULES = {"identity": "Identity", "sigmoid": "Sigmoid", "tanh": "Tanh",
                 "relu": "ReLU", "leaky_relu": "LeakyReLU", "softmax": "Softmax"}

#: scikit-learn's activation names (hidden ``activation`` and ``out_activation_``) and
#: losses -> cyprop's.
SKLEARN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh",
                       "relu": "relu", "softmax": "softmax"}
SKLEARN_LOSSES = {"log_loss": "cross_entropy", "squared_error": "mse"}


def _layers(net: Network, what: str) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Copies of each layer's (weights, biases, activation), taken at once: while another
    thread trains the network, layers read one by one could come from different steps.
    ValueError if they are not finite (set by hand), as ``net.save`` refuses them:
    the model would give NaN where it is deployed."""
    with net._state_lock:
        layers = [(np.array(W), np.array(b), act)
                  for W, b, act in zip(net.weights, net.biases, net.activations)]
    if not all(np.isfinite(W).all() and np.isfinite(b).all() for W, b, _ in layers):
        raise ValueError(f"cannot {what}: the network's weights contain NaN or infinity "
                         "(set by hand, or through a callback?); set finite weights")
    return layers


def _default_loss(output: str) -> str:
    return "cross_entropy" if output in ("softmax", "sigmoid") else "mse"


def _network(sizes: Sequence[int], activations: Sequence[str], weights: Sequence[np.ndarray],
             biases: Sequence[np.ndarray], kwargs: dict[str, Any]) -> Network:
    """A Network of these layers with these parameters (``kwargs`` go to ``Network``;
    ``loss`` defaults to cross-entropy for a softmax or sigmoid output, else mse)."""
    from .network import Network

    # the model converted gives these: Network(**kwargs) would only say "multiple values"
    given = sorted({"sizes", "activation", "output"} & set(kwargs))
    if given:
        raise TypeError(f"{', '.join(given)} cannot be passed: the layer sizes and "
                        "activations are the converted model's (change them on the "
                        "model, or on the network afterwards)")
    kwargs = dict(kwargs)
    kwargs.setdefault("loss", _default_loss(activations[-1]))
    kwargs.setdefault("dtype", np.result_type(*weights).name)
    net = Network(sizes, activation=activations[:-1], output=activations[-1], **kwargs)
    net.weights = weights
    net.biases = biases
    return net


# --------------------------------------------------------------------- ONNX
def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError('exporting to ONNX needs the onnx package: pip install '
                          '"cyprop[onnx]" (or pip install onnx)') from exc
    return onnx


def onnx_model(net: Network, opset: int | None = None, output_name: str = "Y",
               two_columns: bool = False, exp: bool = False,
               flatten: bool = False) -> onnx.ModelProto:
    """The network as an ``onnx.ModelProto``.

    Input ``"X"`` of shape ``["batch", n_in]`` in the network's dtype, one ``Gemm`` per
    layer followed by its activation (see the module's description).

    Parameters
    ----------
    net : Network
        The network to export (float32 or float64).
    opset : int, optional
        The ONNX opset, from 13 to the newest the installed onnx knows; 17 by default.
    output_name : str, default "Y"
        The name of the graph's output.
    two_columns : bool, default False
        After the network's output, a single probability p becomes the columns
        1 - p, p, as ``predict_proba``.
    exp : bool, default False
        After the network's output, ``Exp`` (the Poisson regressor's log link).
    flatten : bool, default False
        One output column becomes shape ``["batch"]``, as a regressor's ``predict``.

    Returns
    -------
    onnx.ModelProto
        The model, checked by ``onnx.checker.check_model``.

    Raises
    ------
    ImportError
        If onnx is not installed (``pip install "cyprop[onnx]"``).
    TypeError
        If ``output_name`` is not a non-empty string.
    ValueError
        If ``opset`` is not an integer in the accepted range, ``output_name`` names
        another tensor of the graph (``"X"``, ``"W0"``, ...), ``two_columns`` or
        ``flatten`` is asked of an output with more columns than they take, or the
        network's weights contain NaN or infinity (set by hand).
    """
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    from ._version import __version__

    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {newest} (the "
                         f"newest this onnx knows), got {opset!r}")
    if not isinstance(output_name, str) or not output_name:
        raise TypeError(f"output_name must be a non-empty string, got {output_name!r}")
    if two_columns and net.sizes[-1] != 1:
        raise ValueError(f"two_columns needs one output, a probability; the network has "
                         f"{net.sizes[-1]}")
    if flatten and (2 if two_columns else net.sizes[-1]) != 1:
        raise ValueError(f"flatten needs one output column, the network's output gives "
                         f"{2 if two_columns else net.sizes[-1]}")
    dtype = np.dtype(net.dtype)
    elem = {np.dtype(np.float32): TensorProto.FLOAT,
            np.dtype(np.float64): TensorProto.DOUBLE}[dtype]
    nodes, inits = [], []

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    layers = _layers(net, "export it to ONNX")
    a = "X"
    for l, (W, b, act) in enumerate(layers):
        z = node("Gemm", [a, const(f"W{l}", W), const(f"b{l}", b)], f"z{l}", transB=1)
        out = f"a{l}"
        if act == "leaky_relu" and dtype == np.float64:
            scaled = node("Mul", [z, const(f"slope{l}", LEAKY_SLOPE)], f"slope_z{l}")
            a = node("Max", [z, scaled], out)
        elif act == "leaky_relu":
            a = node("LeakyRelu", [z], out, alpha=LEAKY_SLOPE)
        elif act == "softmax":
            a = node("Softmax", [z], out, axis=-1)
        else:
            a = node(ONNX_OPS[act], [z], out)
    n_out = net.sizes[-1]
    if exp:
        a = node("Exp", [a], "exp")
    if two_columns:
        one_minus = node("Sub", [const("one", [1.0]), a], "one_minus_p")
        a = node("Concat", [one_minus, a], "two_columns", axis=1)
        n_out = 2
    shape: list[str | int | None] = ["batch", n_out]
    if flatten:
        a = node("Reshape", [a, "flat_shape"], "flat")
        inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"))
        shape = ["batch"]
    taken = {"X"} | {t.name for t in inits} | {o for n in nodes[:-1] for o in n.output}
    if output_name in taken:
        raise ValueError(f"output_name {output_name!r} is already the name of a tensor of "
                         "the graph; choose another")
    nodes[-1].output[0] = output_name   # the last node writes the graph's output
    graph = helper.make_graph(
        nodes, "cyprop_network",
        [helper.make_tensor_value_info("X", elem, ["batch", net.sizes[0]])],
        [helper.make_tensor_value_info(output_name, elem, shape)], initializer=inits)
    opset_import = [helper.make_opsetid("", int(opset))]
    model = helper.make_model(graph, opset_imports=opset_import, producer_name="cyprop",
                              producer_version=__version__,
                              doc_string=f"cyprop {net!r}")
    model.ir_version = helper.find_min_ir_version_for(opset_import)
    onnx.checker.check_model(model)
    return model


def to_onnx(net: Network, path: str | os.PathLike[str], opset: int | None = None,
            **options: Any) -> onnx.ModelProto:
    """Write ``onnx_model(net, opset, **options)`` to ``path``.

    Parameters
    ----------
    net : Network
        The network to export.
    path : str or os.PathLike
        The file to write, exactly there, atomically (as ``Network.save``).
    opset : int, optional
        The ONNX opset (see `onnx_model`); 17 by default.
    **options
        ``output_name``, ``two_columns``, ``exp``, ``flatten``: see `onnx_model`.

    Returns
    -------
    onnx.ModelProto
        The model written.

    Raises
    ------
    ImportError
        If onnx is not installed.
    ValueError
        If ``opset`` is not accepted, the weights are not finite, or ``path`` is not
        a regular file (a FIFO, a device).
    OSError
        If the file cannot be written (the file that was there, if any, is kept).
    """
    model = onnx_model(net, opset, **options)
    data = model.SerializeToString()
    # as Network.save writes: never into a FIFO or device, and a failed write leaves
    # the file that was there
    target, mode = _archive.save_target(os.fspath(path))
    _archive.write_file_atomic(target, lambda fh: fh.write(data), mode)
    return model


# -------------------------------------------------------------------- torch
def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError("converting to or from PyTorch needs torch: pip install torch "
                          "(see pytorch.org)") from exc
    return torch


def _torch_activation(nn: Any, name: str) -> torch.nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name == "softmax":
        return nn.Softmax(dim=-1)
    return getattr(nn, TORCH_MODULES[name])()


def to_torch(net: Network) -> torch.nn.Sequential:
    """An ``nn.Sequential`` computing ``net.forward``.

    Per layer an ``nn.Linear`` (the weights copied, in the network's dtype) and its
    activation module, and an ``nn.Dropout`` after each hidden layer with a dropout
    rate (call ``.eval()`` for inference then, as for any torch module with dropout).

    Parameters
    ----------
    net : Network
        The network to convert.

    Returns
    -------
    torch.nn.Sequential
        The module, in the network's dtype.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    ValueError
        If the network's weights contain NaN or infinity (set by hand).
    """
    torch = _import_torch()
    nn = torch.nn
    dtype = getattr(torch, np.dtype(net.dtype).name)
    layers: list[Any] = []
    rates = net.dropout + [0.0]
    for (W, b, act), rate in zip(_layers(net, "convert it to PyTorch"), rates):
        linear = nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, _torch_activation(nn, act)]
        if rate > 0:
            layers.append(nn.Dropout(rate))
    return nn.Sequential(*layers)


def _hooked(module: torch.nn.Module) -> bool:
    """Whether forward hooks (or a forward set on the module itself) may change what
    ``module`` computes: from_torch reads its parameters and class alone."""
    # (getattr: a child may be None, which from_torch refuses as unsupported)
    return bool(getattr(module, "_forward_hooks", None)
                or getattr(module, "_forward_pre_hooks", None)
                or "forward" in getattr(module, "__dict__", {}))


def _flatten(module: torch.nn.Module, nn: Any) -> list[Any]:
    if isinstance(module, nn.Sequential):
        if _hooked(module):
            raise TypeError(f"{type(module).__name__} has forward hooks (or a forward of "
                            "its own): from_torch reads its layers alone and cannot tell "
                            "what they change; remove them first")
        # a subclass with a forward of its own may compute something other than its
        # layers one after the other, which is all that is read
        if type(module).forward is not nn.Sequential.forward:
            raise TypeError(f"{type(module).__name__} overrides nn.Sequential's forward: "
                            "from_torch reads an nn.Sequential's layers, applied one "
                            "after the other, and cannot tell what its forward computes")
        return [layer for child in module for layer in _flatten(child, nn)]
    return [module]


def _activation_name(layer: Any, nn: Any) -> str | None:
    """cyprop's name for a supported activation module, else None."""
    for name, cls_name in TORCH_MODULES.items():
        if type(layer) is getattr(nn, cls_name):
            if name == "leaky_relu" and layer.negative_slope != LEAKY_SLOPE:
                raise ValueError(f"{layer!r}: cyprop's leaky_relu has the slope "
                                 f"{LEAKY_SLOPE}, not {layer.negative_slope}")
            if name == "softmax" and layer.dim not in (-1, 1):
                raise ValueError(f"{layer!r}: cyprop's softmax is over the features "
                                 "(dim=-1 or 1)")
            return name
    return None


def _values(torch: Any, tensor: Any, where: str, what: str) -> np.ndarray:
    """A parameter's values as a NumPy array of its own, float32 or float64."""
    if tensor.is_meta:
        raise ValueError(f"{where}: its {what} is on the 'meta' device, which holds no "
                         "values (materialise the module first, e.g. "
                         "module.to_empty(device='cpu'), and set its parameters)")
    # complex, and integer or bool ones (which torch's own Linear cannot compute with,
    # and which float32 would round: 2**24 + 1 is not a float32)
    if not tensor.is_floating_point():
        raise ValueError(f"{where}: its {what} is {tensor.dtype}; cyprop's parameters are "
                         "real, float32 or float64")
    tensor = tensor.detach().cpu()
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()   # a sparse weight (torch's Linear takes CSR): same values
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()   # float16, bfloat16: float32 holds their values exactly
    return tensor.numpy().copy()


def from_torch(module: torch.nn.Module, **kwargs: Any) -> Network:
    """A ``Network`` equal to a PyTorch ``nn.Sequential``.

    ``module`` is an ``nn.Sequential`` (nested ones are flattened) of ``nn.Linear``
    layers with bias, each followed by at most one activation module (``Sigmoid``,
    ``Tanh``, ``ReLU``, ``LeakyReLU(0.01)``, ``Identity``, and ``Softmax(dim=-1)`` on
    the output).  A Linear followed directly by another Linear gets the identity;
    ``nn.Identity`` is skipped anywhere.  ``nn.Dropout(p)`` after a hidden layer
    becomes that layer's dropout rate (dropout is only for training; p=0 is skipped
    anywhere; elsewhere refused).

    Parameters
    ----------
    module : torch.nn.Module
        The ``nn.Sequential`` to read.
    **kwargs
        Passed to ``Network``: ``loss`` (default cross-entropy for a softmax or sigmoid
        output, else mse), ``dtype`` (default the weights': float32 for float16 and
        bfloat16 ones), ``backend``, ...

    Returns
    -------
    Network
        A network with the module's weights, biases, activations and dropout rates.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    TypeError
        If ``module`` is not a torch module, a layer is of an unsupported kind
        (convolutions, normalisation, ...; the message names the layer), an
        ``nn.Sequential`` subclass overrides ``forward``, a layer or ``nn.Sequential``
        has forward hooks (``weight_norm``'s too) or hooks for every module are
        registered, or ``kwargs`` holds
        ``sizes``, ``activation`` or ``output`` (the module's).
    ValueError
        If the layers do not make a cyprop network: ``LogSoftmax``, a Linear without
        bias, two activations in a row, an activation before the first Linear,
        dropout on the inputs or after the last Linear, a hidden softmax, layer
        sizes that do not chain, a weight that is not a matrix, or parameters that
        are not floating point (complex, integer, bool) or on the 'meta' device.
    """
    torch = _import_torch()
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_torch needs a torch.nn.Sequential, got {type(module).__name__}")
    # hooks registered for every module (register_module_forward_hook) may change what
    # each layer computes, as its own hooks
    everywhere = nn.modules.module
    if getattr(everywhere, "_global_forward_hooks", None) \
            or getattr(everywhere, "_global_forward_pre_hooks", None):
        raise TypeError("forward hooks for every module are registered "
                        "(torch.nn.modules.module.register_module_forward_hook or _pre_hook): "
                        "from_torch reads parameters alone and cannot tell what they "
                        "change; remove them first")
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activations: list[str | None]   # None until the layer's activation is seen
    rates: list[float]
    weights, biases, activations, rates = [], [], [], []
    # per Linear: weights, biases, its activation (None until one is seen) and the
    # dropout rate after it; a Dropout closes the layer
    closed = False
    for position, layer in enumerate(_flatten(module, nn)):
        where = f"layer {position} ({layer!r})"
        if _hooked(layer):
            raise TypeError(f"{where} has forward hooks (or a forward of its own): "
                            "from_torch reads its parameters alone and cannot tell what "
                            "they change; remove them first")
        # (a subclass may compute something of its own: refused below as unsupported)
        if type(layer) is nn.Identity:
            continue
        if type(layer) is nn.Linear:
            if layer.bias is None:
                raise ValueError(f"{where} has no bias: cyprop's layers always have one "
                                 "(give the Linear a zero bias to convert it)")
            weights.append(_values(torch, layer.weight, where, "weight"))
            if weights[-1].ndim != 2:   # (torch's linear also takes a vector)
                raise ValueError(f"{where}: its weight has shape {weights[-1].shape}; "
                                 "cyprop's are (out_features, in_features)")
            biases.append(_values(torch, layer.bias, where, "bias"))
            activations.append(None)
            rates.append(0.0)
            closed = False
            continue
        if type(layer) is nn.Dropout:
            if layer.p == 0:
                continue
            if not weights:
                raise ValueError(f"{where}: cyprop has no dropout on the inputs")
            if closed:
                raise ValueError(f"{where}: two Dropout layers in a row")
            rates[-1], closed = float(layer.p), True
            continue
        if isinstance(layer, nn.LogSoftmax):
            raise ValueError(f"{where}: cyprop has no log-softmax output; use nn.Softmax "
                             "(cyprop's cross-entropy works from the softmax's inputs)")
        name = _activation_name(layer, nn)
        if name is None:
            raise TypeError(f"{where} is not supported: from_torch reads nn.Linear, "
                            "nn.Dropout and the activations "
                            f"{', '.join(sorted(set(TORCH_MODULES.values())))}")
        if not weights:
            raise ValueError(f"{where}: an activation before the first Linear")
        if closed or activations[-1] is not None:
            raise ValueError(f"{where}: a second activation (or one after Dropout) on the "
                             "same layer; cyprop has one activation per layer")
        activations[-1] = name
    if not weights:
        raise ValueError("from_torch found no nn.Linear layer in the module")
    names = [name or "identity" for name in activations]
    if rates[-1]:
        raise ValueError("a Dropout after the last Linear: cyprop has dropout on hidden "
                         "layers only")
    if "softmax" in names[:-1]:
        raise ValueError(f"a Softmax after hidden layer {names.index('softmax')}: "
                         "cyprop has softmax on the output only")
    sizes = [weights[0].shape[1]] + [W.shape[0] for W in weights]
    for l, (W, previous) in enumerate(zip(weights[1:], sizes[1:]), start=1):
        if W.shape[1] != previous:
            raise ValueError(f"Linear layer {l} takes {W.shape[1]} inputs, but the layer "
                             f"before gives {previous}")
    kwargs.setdefault("dropout", rates[:-1])
    return _network(sizes, names, weights, biases, kwargs)


# ------------------------------------------------------------- scikit-learn
def from_sklearn(mlp: Any, **kwargs: Any) -> Network:
    """A ``Network`` copied from a fitted scikit-learn MLP, to keep training it with cyprop.

    Its ``forward`` is a fitted ``MLPClassifier``'s ``predict_proba`` or an
    ``MLPRegressor``'s ``predict`` (the weights copied, transposed to cyprop's
    (n_out, n_in)).  The shapes differ in two cases: a binary classifier has one
    logistic output, p, where ``predict_proba`` gives the two columns 1 - p, p; a
    regressor's ``forward`` is (n, 1) where ``predict`` gives (n,) for one target.
    cyprop's ``BackpropClassifier`` / ``BackpropRegressor`` give a copy of their
    ``network_`` with its dropout and max_norm (for ``loss='poisson'`` its output is
    the log of ``predict``).

    Parameters
    ----------
    mlp : MLPClassifier, MLPRegressor, BackpropClassifier or BackpropRegressor
        The fitted estimator.
    **kwargs
        Passed to ``Network``: ``loss`` defaults to the estimator's (log_loss ->
        cross_entropy, squared_error -> mse), ``dtype`` to the weights'.

    Returns
    -------
    Network
        The copy.

    Raises
    ------
    TypeError
        If ``mlp`` is not a fitted MLP estimator, or ``kwargs`` holds ``sizes``,
        ``activation`` or ``output`` (the estimator's).
    ValueError
        If its activation or loss has no cyprop equivalent (pass ``loss=`` for the
        latter), or its ``coefs_`` / ``intercepts_`` are not one matrix and one vector
        per layer, or ``n_layers_`` does not count them (set by hand).
    """
    from .network import Network

    net = getattr(mlp, "network_", None)
    if net is not None:   # cyprop's own estimators
        if not isinstance(net, Network):
            raise TypeError(f"from_sklearn: the estimator's network_ is a "
                            f"{type(net).__name__}, not a cyprop Network (set by hand?)")
        settings = dict(loss=net.loss_name, dtype=net.dtype.name, dropout=net.dropout,
                        max_norm=net.max_norm or None)
        with net._state_lock:   # (as onnx_model: every layer from the same step)
            weights = [np.array(W) for W in net.weights]
            biases = [np.array(b) for b in net.biases]
        return _network(net.sizes, net.activations, weights, biases,
                        dict(settings, **kwargs))
    if not hasattr(mlp, "coefs_") or not hasattr(mlp, "out_activation_"):
        raise TypeError(f"from_sklearn needs a fitted MLPClassifier or MLPRegressor, got "
                        f"{type(mlp).__name__}" + (" (not fitted?)" if hasattr(mlp, "activation")
                                                    else ""))
    coefs, intercepts = _sklearn_parameters(mlp)
    names: list[Any] = ([getattr(mlp, "activation", None)] * (len(coefs) - 1)
                        + [mlp.out_activation_])
    for attribute, name in zip(["activation"] * (len(coefs) - 1) + ["out_activation_"], names):
        # (isinstance first: a list set by hand is no key of the table)
        if not isinstance(name, str) or name not in SKLEARN_ACTIVATIONS:
            raise ValueError(f"the activation {name!r} ({attribute}) has no cyprop equivalent"
                             + (" (loss='poisson'; BackpropRegressor(loss='poisson') "
                                "trains that)" if name == "exp" else ""))
    if "loss" not in kwargs:
        loss = getattr(mlp, "loss", None)
        if not isinstance(loss, str) or loss not in SKLEARN_LOSSES:
            raise ValueError(f"the loss {loss!r} has no cyprop equivalent; pass loss=")
        kwargs["loss"] = SKLEARN_LOSSES[loss]
    weights = [np.ascontiguousarray(W.T) for W in coefs]
    sizes = [weights[0].shape[1]] + [W.shape[0] for W in weights]
    return _network(sizes, [SKLEARN_ACTIVATIONS[n] for n in names], weights, intercepts,
                    kwargs)


def _sklearn_parameters(mlp: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``coefs_`` and ``intercepts_`` as arrays: one (n_in, n_out) matrix and one vector
    per layer.  ValueError if they are not (set by hand): an empty list or a vector
    for a matrix ended in an IndexError."""
    coefs: Any = mlp.coefs_
    intercepts: Any = getattr(mlp, "intercepts_", None)
    for attribute, value in (("coefs_", coefs), ("intercepts_", intercepts)):
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{attribute} must be a non-empty list of arrays, one per "
                             f"layer, got {type(value).__name__}"
                             + (" (empty)" if isinstance(value, (list, tuple)) else ""))
    if len(coefs) != len(intercepts):
        raise ValueError(f"{len(coefs)} coefs_ and {len(intercepts)} intercepts_: "
                         "one of each per layer")
    # scikit-learn's predict computes n_layers_ - 1 layers, whatever coefs_ holds
    n_layers = getattr(mlp, "n_layers_", len(coefs) + 1)
    if n_layers != len(coefs) + 1:
        raise ValueError(f"n_layers_ is {n_layers!r}, but coefs_ holds {len(coefs)} "
                         f"layers (n_layers_ {len(coefs) + 1}, the input layer counted)")
    coefs = [np.asarray(W) for W in coefs]
    intercepts = [np.asarray(b) for b in intercepts]
    for attribute, arrays, ndim in (("coefs_", coefs, 2), ("intercepts_", intercepts, 1)):
        for l, array in enumerate(arrays):
            if array.ndim != ndim:
                raise ValueError(f"{attribute}[{l}] has shape {array.shape}; a "
                                 f"{'matrix' if ndim == 2 else 'vector'} is needed")
    return coefs, intercepts
