"""Every model the suite compares against Lite-LLM4Rec, one file (or small folder) per family."""
