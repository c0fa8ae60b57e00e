"""What-if studies over plans: DataFrames, plots, reports, comparisons, capacity, sweeps, output files."""
