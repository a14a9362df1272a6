"""HLLM: an Item LLM that compresses item text into an [ITEM] state (item_llm.py) and a causal
User LLM over those embeddings trained with InfoNCE (model.py)."""
from .item_llm import CachedItemLLM, TextItemLLM, encode_all_items, frozen_item_table, tokenize_texts
from .model import HLLM, HLLMNet, HLLMParams, causal_attention_mask, info_nce

__all__ = ["CachedItemLLM", "HLLM", "HLLMNet", "HLLMParams", "TextItemLLM", "causal_attention_mask",
           "encode_all_items", "frozen_item_table", "info_nce", "tokenize_texts"]
