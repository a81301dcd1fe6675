"""Commands other than search: apply, sensitivity, sparsify, regularize, profile, space init.

Each is a function with the CLI command's name and options; ``autoprune.cli`` only parses and prints.
"""
