"""Lite-LLM4Rec (Wang et al., "Rethinking Large Language Model Architectures for Sequential
Recommendations"): Item LLM -> item vectors, Recommendation LLM over the sequence, mean pooling,
item projection head. The model itself is built on top of the shared protocol in `benchmarks/`."""
