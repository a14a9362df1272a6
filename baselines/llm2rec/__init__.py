"""LLM2Rec: a decoder LLM made an item-embedding model (CSFT, then MNTP and SimCSE with
bidirectional attention: stages.py), its item table cached (pipeline.py), and a SASRec over the
table through a linear adapter (model.py)."""
from .model import LLM2Rec, LLM2RecParams, LLM2RecSASRec
from .pipeline import CODE_VERSION, STAGES, item_embeddings, stage_keys

__all__ = ["CODE_VERSION", "LLM2Rec", "LLM2RecParams", "LLM2RecSASRec", "STAGES", "item_embeddings", "stage_keys"]
