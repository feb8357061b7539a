"""Floating-point operations of one call of a TensorFlow function, counted on its traced graph.

`count_call(function, args, constant=...)` traces `function(*args)` with exactly the shapes of
`args` into a `tf.function` graph and walks it op by op. The backward pass is in that graph:
`GradientTape.gradient` and the `grad` of a `tf.custom_gradient` run at trace time and add their
ops to the same graph as the forward. Loop bodies, conditional branches and called functions (a
`tf.while_loop` or `tf.map_fn`, forward or a hand-written backward; `tf.cond`; nested
`tf.function`s) are functions of the graph's library: the walk follows the op's function
attribute (`body`, `then_branch` / `else_branch`, `branches`, `f`) into its FuncGraph, looked up
by name (`Graph._get_function`; TF has no public lookup) and counted there, recursively. So a
training step's forward, backward (custom gradients included) and optimizer update all count.

What is counted, per op (a multiply-add is 2 FLOPs):

- Ours, exact from the op's input and output shapes: `MatMul`, `BatchMatMul` / `V2` / `V3`
  (`2 * output elements * K`, with `adj_x`; TF's own registry reads an attribute BatchMatMul
  does not have and takes the wrong K of an adjoint operand, as in the backward pass), `Einsum`
  (`2 * product of every label's size` when a label is summed, else the product; TF counts it
  as 0), `Conv2D`, `Conv2DBackpropInput`, `Conv2DBackpropFilter` and the depthwise backprops
  (each `2 * elements of the convolution's output * kernel height * width * input channels`:
  the backprops cost what the forward does; TF's registry divides the input size by the stride,
  which is off for 'VALID' or explicitly padded convolutions). TF builds a dilated convolution
  as space to batch + `Conv2D` (on CPU and GPU), which pads a feature map whose size is not a
  multiple of the dilation: the count is what that `Conv2D` computes, padding included.
- TF's registry (`ops.get_stats_for_node_def`, what `tf.compat.v1.profiler`'s
  `float_operation()` reports; a test checks that the two agree): the element-wise arithmetic
  (`Add`, `Mul`, `Sub`, `RealDiv`, `Square`, `Rsqrt`, `Pow`, ...), reductions (`Sum`, `Mean`,
  `BiasAddGrad`), `Softmax` (5 per element), `BiasAdd`, pooling and their gradients.
- Not counted (0): everything else, notably activations and their gradients (`Relu`,
  `Sigmoid`, `Tanh`, `Exp` ...), `Cast`, `Select`, resizing, gathers and data movement: these
  are memory-bound, not what a matmul peak measures.

Control flow: a `While` body counts once per iteration, the number of iterations read at run
time at the top level (the loop counter that while_v2 returns as its first output) and from the
loop's constant `maximum_iterations` when nested (exact for `tf.map_fn`); an `If` / `Case`
counts the branch its predicate takes (read at run time at the top level, the costliest branch
with a note where unknown); loop conditions are not counted. Ops of the top-level graph whose
result reaches neither an output nor a stateful op (dead code, which the runtime prunes, e.g. a
forward value only its gradient's shape needed) are not counted.

Shapes: `constant` names the arguments embedded in the graph as constants, so that shapes
computed from their values (e.g. the number of real words) are static; whatever static shape
inference leaves unknown at the top level (e.g. a `TensorArray` of a data-dependent length) is
read by running the traced function once (so its side effects, an optimizer step, happen once).
The count is of the graph as traced, before Grappler or XLA rewrite it (fusions move no FLOPs;
a pruned or constant-folded op would). What cannot be counted (an unknown shape inside a loop
body, a loop of unknown length) goes to `FlopCount.notes` (the op counted as 0, the loop once),
never guessed silently.
"""

import collections
import dataclasses
import math

import tensorflow as tf
from tensorflow.python.framework import ops as framework_ops
from tensorflow.python.framework import tensor_util
from tensorflow.python.profiler.internal import flops_registry  # noqa: F401 (registers counts)

MATMUL_TYPES = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
CONV_TYPES = (
    "Conv2D",
    "Conv2DBackpropInput",
    "Conv2DBackpropFilter",
    "DepthwiseConv2dNativeBackpropInput",
    "DepthwiseConv2dNativeBackpropFilter",
)
# Ops counted by our formulas; `MATRIX_TYPES` is the part a matmul peak is about.
MATRIX_TYPES = MATMUL_TYPES + ("Einsum",) + CONV_TYPES + ("DepthwiseConv2dNative",)
CALL_TYPES = ("PartitionedCall", "StatefulPartitionedCall")
IF_TYPES = ("If", "StatelessIf")
CASE_TYPES = ("Case", "StatelessCase")
WHILE_TYPES = ("While", "StatelessWhile")
# Tensors of these dtypes carry no shape worth reading at run time.
_OPAQUE = (tf.resource, tf.variant, tf.string)


@dataclasses.dataclass
class FlopCount:
    """FLOPs of one call: the total, per op type, and what could not be counted exactly."""

    total: int = 0
    by_type: dict = dataclasses.field(default_factory=collections.Counter)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def matrix(self):
        """FLOPs of the matmul / einsum / convolution ops (`MATRIX_TYPES`)."""
        return sum(self.by_type.get(t, 0) for t in MATRIX_TYPES)

    def add(self, op_type, flops):
        if flops:
            self.by_type[op_type] += int(flops)
            self.total += int(flops)


def _shape(tensor):
    """The static shape of `tensor` as a list of ints, or None when not fully known."""
    shape = tensor.shape
    return shape.as_list() if shape.rank is not None and shape.is_fully_defined() else None


def _matmul_flops(op, shapes):
    a, _, out = shapes
    if op.type == "MatMul":
        k = a[0] if op.get_attr("transpose_a") else a[1]
    else:
        k = a[-2] if op.get_attr("adj_x") else a[-1]
    return 2 * math.prod(out) * k


def _einsum_labels(term, shape, width):
    """Labels of each axis of an operand; the ellipsis becomes `width` labels, right-aligned."""
    if "..." not in term:
        return list(term)
    head, tail = term.split("...")
    rank = len(shape) - len(head) - len(tail)
    return list(head) + [f"...{i}" for i in range(width - rank, width)] + list(tail)


def einsum_flops(equation, shapes):
    """FLOPs of `tf.einsum(equation, *operands)` on operands of `shapes` (lists of ints)."""
    equation = equation.replace(" ", "")
    inputs, output = equation.split("->") if "->" in equation else (equation, None)
    terms = inputs.split(",")
    width = max(
        (len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes) if "..." in t),
        default=0,
    )
    sizes = {}
    for term, shape in zip(terms, shapes):
        for label, size in zip(_einsum_labels(term, shape, width), shape):
            sizes[label] = max(sizes.get(label, 1), size)
    if output is None:  # implicit: the labels seen once, in order
        seen = collections.Counter(label for term in terms for label in term)
        output = "..." * bool(width) + "".join(sorted(k for k, n in seen.items() if n == 1))
    kept = set(_einsum_labels(output, [0] * (width + len(output.replace("...", ""))), width))
    summed = set(sizes) - kept
    product = math.prod(sizes.values())
    if len(terms) == 1:
        return product if summed else 0
    return 2 * product if summed else product


def _conv_flops(op, shapes):
    inputs, outputs = shapes[:-1], shapes[-1]
    if op.type == "Conv2D":
        kernel = inputs[1]
        return 2 * math.prod(outputs) * kernel[0] * kernel[1] * kernel[2]
    # The backprops: the gradient of the output (input 2) against the kernel, as the forward.
    kernel = inputs[1] if op.type.endswith("Input") else outputs
    out_backprop = inputs[2]
    if op.type.startswith("Depthwise"):  # kernel [h, w, in, multiplier]: no sum over channels
        return 2 * math.prod(out_backprop) * kernel[0] * kernel[1]
    return 2 * math.prod(out_backprop) * kernel[0] * kernel[1] * kernel[2]


def _own_flops(op):
    """FLOPs of an op of `MATRIX_TYPES` (but the depthwise forward), or None if shapes are
    unknown."""
    if op.type in CONV_TYPES and op.type != "Conv2D":
        # Shape-valued inputs (input_sizes / filter_sizes) count as shapes of their values.
        shapes = []
        for i, tensor in enumerate(op.inputs):
            is_sizes = (op.type.endswith("Input") and i == 0) or (
                op.type.endswith("Filter") and i == 1
            )
            shapes.append([0] if is_sizes else _shape(tensor))
        shapes.append(_shape(op.outputs[0]))
    else:
        shapes = [_shape(t) for t in op.inputs] + [_shape(op.outputs[0])]
    if any(s is None for s in shapes):
        return None
    if op.type in MATMUL_TYPES:
        return _matmul_flops(op, shapes)
    if op.type == "Einsum":
        return einsum_flops(op.get_attr("equation").decode(), shapes[:-1])
    return _conv_flops(op, shapes)


def _registry_flops(op):
    """TF's registered count of `op` (what `tf.compat.v1.profiler` reports), 0 if none; None
    if the registered formula needs a shape that is unknown."""
    try:
        stats = framework_ops.get_stats_for_node_def(op.graph, op.node_def, "flops")
    except (ValueError, TypeError):
        return None
    return int(stats.value or 0)


def _function_graph(graph, name):
    """The FuncGraph of the library function `name`, looked up from `graph` outwards."""
    while graph is not None:
        function = graph._get_function(name)  # no public lookup
        if function is not None:
            return function.graph
        graph = getattr(graph, "outer_graph", None)
    raise KeyError(f"function {name!r} is not in the graph's library")


def _constant_int(tensor, known):
    if tensor.name in known:
        return int(known[tensor.name])
    value = tensor_util.constant_value(tensor)
    return None if value is None else int(value)


def _live_ops(graph, roots):
    """The ops whose results reach `roots` or a control output of `graph` (what runs)."""
    pending = [t.op for t in roots] + list(graph.control_outputs)
    live = set()
    while pending:
        op = pending.pop()
        if op in live:
            continue
        live.add(op)
        pending.extend(t.op for t in op.inputs)
        pending.extend(op.control_inputs)
    return live


def count_graph(graph, known=None, count=None, times=1, live=None):
    """Adds the FLOPs of the ops of `graph` (in `live` if given), `times` over, to `count`.

    `known` maps tensor names of `graph` to run-time values (loop counters, predicates).
    Returns the `FlopCount`.
    """
    count = FlopCount() if count is None else count
    known = known or {}
    for op in graph.get_operations():
        if live is not None and op not in live:
            continue
        where = f"{graph.name}/{op.name}" if hasattr(graph, "outer_graph") else op.name
        if op.type in CALL_TYPES:
            count_graph(_function_graph(graph, op.get_attr("f").name), None, count, times)
        elif op.type in IF_TYPES or op.type in CASE_TYPES:
            branches = (
                [op.get_attr("then_branch").name, op.get_attr("else_branch").name]
                if op.type in IF_TYPES
                else [f.name for f in op.get_attr("branches")]
            )
            taken = _constant_int(op.inputs[0], known)
            if taken is None:
                count.notes.append(f"{where}: branch unknown, counted the costliest")
                costs = [
                    count_graph(_function_graph(graph, b), None, None, times) for b in branches
                ]
                best = max(costs, key=lambda c: c.total)
                for op_type, flops in best.by_type.items():
                    count.add(op_type, flops)
                count.notes.extend(best.notes)
                continue
            if op.type in IF_TYPES:
                taken = 0 if taken else 1
            else:
                taken = taken if 0 <= taken < len(branches) else len(branches) - 1
            count_graph(_function_graph(graph, branches[taken]), None, count, times)
        elif op.type in WHILE_TYPES:
            trips = known.get(op.outputs[0].name)
            if trips is None:
                trips = _constant_int(op.inputs[1], {})  # maximum_iterations, -1 if none
                if trips is None or trips < 0:
                    count.notes.append(f"{where}: number of iterations unknown, counted once")
                    trips = 1
            body = _function_graph(graph, op.get_attr("body").name)
            count_graph(body, None, count, times * int(trips))
        elif op.type in MATRIX_TYPES and op.type != "DepthwiseConv2dNative":
            flops = _own_flops(op)
            if flops is None:
                count.notes.append(f"{where} ({op.type}): shape unknown, not counted")
            else:
                count.add(op.type, flops * times)
        else:
            flops = _registry_flops(op)
            if flops is None:
                count.notes.append(f"{where} ({op.type}): shape unknown or format, not counted")
            elif flops:
                count.add(op.type, flops * times)
    return count


def _probes(graph):
    """Tensors to read at run time: unknown shapes, loop counters and branch predicates."""
    shapes, values = {}, {}
    for op in graph.get_operations():
        if op.type in WHILE_TYPES:
            values[op.outputs[0].name] = op.outputs[0]
        elif (op.type in IF_TYPES or op.type in CASE_TYPES) and (
            tensor_util.constant_value(op.inputs[0]) is None
        ):
            values[op.inputs[0].name] = op.inputs[0]
        if op.type in WHILE_TYPES + IF_TYPES + CASE_TYPES + CALL_TYPES:
            continue  # their outputs are counted through their bodies
        for tensor in op.outputs:
            if tensor.dtype not in _OPAQUE and _shape(tensor) is None:
                shapes[tensor.name] = tf.shape(tensor)
    return shapes, values


def count_call(function, args, constant=()):
    """FLOPs of one call `function(*args)` (tensors or arrays), traced with exactly their shapes.

    Arguments at the indices `constant` are embedded as constants (see the module docstring).
    Returns a `FlopCount`.
    """
    args = [tf.convert_to_tensor(a) for a in args]
    constant = set(constant)
    fed = [a for i, a in enumerate(args) if i not in constant]
    traced_ops = {}  # filled while tracing

    def traced(*fed_args):
        feed = iter(fed_args)
        call_args = [
            tf.constant(a.numpy()) if i in constant else next(feed) for i, a in enumerate(args)
        ]
        result = function(*call_args)
        traced_ops["roots"] = [t for t in tf.nest.flatten(result) if tf.is_tensor(t)]
        shapes, values = _probes(tf.compat.v1.get_default_graph())
        return result, shapes, values

    concrete = tf.function(traced).get_concrete_function(
        *[tf.TensorSpec(a.shape, a.dtype) for a in fed]
    )
    graph = concrete.graph
    _, shapes, values = concrete.structured_outputs
    known = {}
    if shapes or values:
        _, shapes, values = concrete(*fed)
        for name, shape in shapes.items():
            graph.get_tensor_by_name(name).set_shape(shape.numpy().tolist())
        known = {name: value.numpy() for name, value in values.items()}
    # What the call runs (the probes reach neither its results nor its stateful ops; those are
    # the graph's control outputs once the trace is complete).
    live = _live_ops(graph, traced_ops["roots"])
    return count_graph(graph, known, live=live)
