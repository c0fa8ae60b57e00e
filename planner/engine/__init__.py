"""From a scenario to a plan: compiled problem, CP-SAT families, heuristics, decomposition, bounds, pinning."""
