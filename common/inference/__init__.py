"""One inference path: the InferenceCore (model, sampler, engine, H, K, seed), windows and groups of
whole sequences, and the aggregation modes (MODES, the one registry)."""
