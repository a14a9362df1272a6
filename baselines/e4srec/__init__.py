"""E4SRec: item ID embeddings from the suite's SASRec injected into a LoRA-tuned LLM (model.py),
the one-pass prefix layout for causal LLMs (prompt.py) and the SASRec embeddings (sasrec.py)."""
from .model import E4SRec, E4SRecNet, E4SRecParams
from .sasrec import find_sasrec_checkpoints, recbole_item_index, sasrec_item_embeddings

__all__ = ["E4SRec", "E4SRecNet", "E4SRecParams", "find_sasrec_checkpoints", "recbole_item_index",
           "sasrec_item_embeddings"]
