"""Pruning: the plan, importance criteria, the structural engine (Torch-Pruning), masks and sparsity penalties."""
