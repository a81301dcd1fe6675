"""Reports: trials and Pareto tables (pandas), plots, channel charts and the live progress display."""
