"""Core: errors, typed config (YAML with file/key/value errors), records, registries, devices.

Imports nothing from the rest of autoprune.
"""
