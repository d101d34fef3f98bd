"""Building blocks every stage that reads audio shares, below the stages and the training layer:
the frozen-encoder feature cache, how a long recording's windows fill prompts, and the
summaries of recordings of any length (one prompt, or map-reduce)."""
