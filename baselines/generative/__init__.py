"""Generative recommenders (P5, POD, LightLM) on one sequence-to-sequence core, and the paper's
decoder-free variants (Tables 2 and 9). Readable top to bottom.

    items -> text ids ("item_1234": random numbers by default, as in the paper)
    user's id and last 20 items -> prompt tokens (+ whole-word ids marking each id's sub-word tokens)
      -> encoder -> decoder generates the next item's id tokens, teacher-forced in training
    inference: 20-beam search (transformers' `generate`, with its cache) -> top-20 item ids

The three generative models differ only in their settings (their `Params`, in p5.py):
- P5: a natural-language prompt around the user's id ("user_7", `user_in_prompt`) and history,
  whole-word embeddings added to the token embeddings (P5's way of telling the encoder which
  sub-word tokens form one id); prompts.py says how the user id is written and tokenised.
- POD: the discrete prompt replaced by a few learned continuous prompt vectors (shorter input).
- LightLM: deep and narrow (every feed-forward block cut to a small width), collaborative item
  indexing (hierarchical spectral clustering of the item co-occurrence graph, so items that occur
  together share id prefixes) and beam search constrained to valid item ids by a prefix trie.

Backbones: a T5 name loads `T5ForConditionalGeneration`; any other encoder (the offline default,
the packaged all-MiniLM-L6-v2) becomes transformers' `EncoderDecoderModel` with encoder and
decoder both initialised from it (bert2bert; the cross-attention starts new); a decoder-only
causal LM (smollm2-135m, a Llama-family name) reads the prompt and then generates the id tokens
in one causal sequence (decoder_only.py, OpenP5's LLaMA path). Never silently a different model: a
backbone that cannot be loaded skips the run with the reason.

Lists: history items are never generated (the constrained trie leaves them out; unconstrained
decoding bans the end-of-id token after a history item's tokens), so the beam returns k
candidates that are not in the history without widening; strings that are not item ids are
dropped and counted, never replaced. The rule and the counts go into the record. Evaluated on
sampled candidates (1 target + 99 negatives, Figure 6), the beam may spell only the user's
candidates (the same prefix trie, restricted to them): the model ranks the 100 items, as a
scoring model does, instead of having its catalogue-wide list filtered to them.

Variants (`P5WithoutDecoder`): `w/o_d` keeps P5's prompt and encoder, removes the
decoder, and puts an item projection head on the mean-pooled encoder output (scores every item
in one step; on a decoder-only backbone, on the prompt's last real token's state); `w/o_d_TID`
writes item titles instead of ids.

Modules: indexing.py (item ids as text), backbone.py (the seq2seq model or causal LM),
prompts.py, decoding.py (beam-search rules), decoder_only.py (the causal LM's training sequence,
left padding and beam search), p5.py (P5, POD, LightLM), without_decoder.py (w/o_d, w/o_d_TID).
"""
from .decoding import BanHistoryItems, TrieConstraint
from .indexing import ItemIdTokens, collaborative_indexing, random_indexing, sequential_indexing
from .p5 import P5, POD, LightLM
from .without_decoder import P5WithoutDecoder

__all__ = ["BanHistoryItems", "ItemIdTokens", "LightLM", "P5", "P5WithoutDecoder", "POD", "TrieConstraint",
           "collaborative_indexing", "random_indexing", "sequential_indexing"]
