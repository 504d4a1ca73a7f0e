"""Derivation-based rewrites (OLLIE style): rules, search, instantiation, the pass.

A *derivation* is a sequence of rule applications that turns one tensor-algebra
expression into an equal one; the search looks for a derived expression whose
instantiated program (library ops plus generated ``expr`` kernels) is faster.
"""
