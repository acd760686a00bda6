"""What a gate's threshold promises: calibration targets, δ for a target, certified δ (Learn
then Test), conformal label sets, the LLM's measured accuracy, and deferral scores."""
