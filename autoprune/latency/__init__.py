"""Latency: hardware profiles, ONNX export and ONNX Runtime timing, pooled measurement across processes,
the cache, node locks, latency tables and cost models, budgets, INT8 quantization.
"""
