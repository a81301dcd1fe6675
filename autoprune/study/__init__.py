"""The search: a trial, Optuna samplers, seed plans, the budget repair, study storage, the Ray Tune
backend and the run (``search``) that ties them together.
"""
