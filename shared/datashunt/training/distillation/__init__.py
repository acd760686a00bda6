"""2-Stage Confidence Distillation: the LLM's logged answers back into the gate (a fine-tuned
copy, or an embedding gate's head refit), with its data, training rounds and report."""
