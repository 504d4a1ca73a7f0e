"""TVM code generation: Graph -> TE kernels -> Relax module -> scheduled, compiled executable.

- ``lower_expr``: the generic Expr -> TE lowering (every op with an Expr);
- ``te_ops``: TE lowerings for ops without one (gathers, scatters, casts, topk, split);
- ``relax_graph``: the graph as a Relax IRModule;
- ``schedule``: tensoropt's own schedule rules per kernel (GEMM-like,
  pooling, row reductions, injective) for LLVM, dlight's for CUDA;
- ``build``: the whole path, with progress.

TVM is imported by these modules only: ``import tensoropt`` stays fast.
"""
