"""The generative backbone: T5 by name, an encoder-decoder built from one encoder (bert2bert), or
a decoder-only causal LM (SmolLM2, any Llama-family name), with LightLM's narrow feed-forward
blocks."""
from __future__ import annotations

from torch import nn

from benchmarks import backbones


def _cut_feed_forward(model: nn.Module, old_width: int, new_width: int) -> None:
    """Keep the first `new_width` units of every feed-forward block (LightLM's narrow layers).
    Linear layers into the block have out_features == old_width, out of it in_features."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            if child.out_features == old_width and child.in_features != old_width:
                cut = nn.Linear(child.in_features, new_width, bias=child.bias is not None)
                cut.weight.data.copy_(child.weight.data[:new_width])
                if child.bias is not None:
                    cut.bias.data.copy_(child.bias.data[:new_width])
            elif child.in_features == old_width and child.out_features != old_width:
                cut = nn.Linear(new_width, child.out_features, bias=child.bias is not None)
                cut.weight.data.copy_(child.weight.data[:, :new_width])
                if child.bias is not None:
                    cut.bias.data.copy_(child.bias.data)
            else:
                continue
            setattr(parent, name, cut.to(child.weight.dtype))


def load_seq2seq(name: str, tokenizer, *, pretrained: bool = True, ffn_width: int | None = None):
    """(encoder-decoder model, its encoder, special token ids) for a backbone name."""
    from transformers import EncoderDecoderModel, T5ForConditionalGeneration

    config = backbones.load_config(name)
    resolved = backbones.resolve(name)
    is_t5 = config.model_type in ("t5", "mt5", "umt5")
    pad_id = tokenizer.pad_token_id
    eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if is_t5:
        if pretrained:
            model = backbones._from_pretrained(T5ForConditionalGeneration.from_pretrained, name, resolved)
        else:
            model = T5ForConditionalGeneration(config)
        start_id = model.config.decoder_start_token_id if model.config.decoder_start_token_id is not None else pad_id
        old_ffn = model.config.d_ff
    else:
        if pretrained:
            def loader(path, local_files_only=False):
                from transformers.utils import logging as hf_logging
                level = hf_logging.get_verbosity()
                hf_logging.set_verbosity_error()  # the expected report: cross-attention and LM head start new
                try:
                    return EncoderDecoderModel.from_encoder_decoder_pretrained(
                        path, path, encoder_local_files_only=local_files_only,
                        decoder_local_files_only=local_files_only)
                finally:
                    hf_logging.set_verbosity(level)
            model = backbones._from_pretrained(loader, name, resolved)
        else:
            from transformers import AutoConfig, EncoderDecoderConfig
            decoder_config = AutoConfig.from_pretrained(resolved, local_files_only=True)
            decoder_config.is_decoder, decoder_config.add_cross_attention = True, True
            model = EncoderDecoderModel(EncoderDecoderConfig.from_encoder_decoder_configs(
                AutoConfig.from_pretrained(resolved, local_files_only=True), decoder_config))
        start_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else pad_id
        old_ffn = model.config.encoder.intermediate_size
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = start_id, pad_id, eos_id
    if ffn_width:
        _narrow(model, name, old_ffn, ffn_width)
        if is_t5:
            model.config.d_ff = int(ffn_width)
        else:
            model.config.encoder.intermediate_size = model.config.decoder.intermediate_size = int(ffn_width)
    return model, model.get_encoder(), {"pad": pad_id, "eos": eos_id, "start": start_id}


def _narrow(model: nn.Module, name: str, old_ffn: int, ffn_width: int) -> None:
    if not 0 < int(ffn_width) <= old_ffn:
        raise ValueError(f"model.ffn_width={ffn_width} must be between 1 and {name}'s feed-forward width {old_ffn}")
    _cut_feed_forward(model, old_ffn, int(ffn_width))


def is_causal_backbone(name: str) -> bool:
    """Whether a backbone name loads a decoder-only causal LM (read from its config alone)."""
    return backbones.load_config(name).model_type in backbones.CAUSAL_TYPES


def load_causal_lm(name: str, tokenizer, *, pretrained: bool = True, ffn_width: int | None = None):
    """(causal LM with its LM head, special token ids) for a decoder-only backbone name. The end of
    an item id is the tokenizer's end-of-sequence token; padding is the tokenizer's pad token (its
    end of sequence where it has none: padded positions are masked and never labelled). LightLM's
    narrow feed-forward cut applies to a Llama-style gated block (gate, up and down projections)."""
    from transformers import AutoModelForCausalLM

    config = backbones.load_config(name)
    if pretrained:
        model = backbones._from_pretrained(AutoModelForCausalLM.from_pretrained, name, backbones.resolve(name))
    else:
        model = AutoModelForCausalLM.from_config(config)
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError(f"backbone {name!r}: its tokenizer has no end-of-sequence token to end item ids with")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    for cfg in (model.config, model.generation_config):
        cfg.pad_token_id, cfg.eos_token_id = pad_id, eos_id
    if ffn_width:
        _narrow(model, name, model.config.intermediate_size, ffn_width)
        model.config.intermediate_size = int(ffn_width)
    return model, {"pad": pad_id, "eos": eos_id}
